// Mapping paths ("data.items.0.price.id" or ["data", "a.b"]) walked in place on jsonb.
#pragma once

extern "C" {
#include "postgres.h"
#include "utils/jsonb.h"
}

namespace sequin {

// One step of a path: an object key, which may also index an array when it is all digits.
struct PathStep {
    const char *key;
    int key_length;
    int array_index; // -1 unless the key is all digits
};

struct JsonPath {
    int step_count;
    const PathStep *steps;
};

// Finds the value at path inside an object container. Returns false when any step is
// absent (or walks into a scalar). Server code: may ereport only on corrupt jsonb.
bool json_path_find(JsonbContainer *root, const JsonPath &path, JsonbValue *found);

// jsonb's order of object keys (shorter first, then bytewise): the order json_find_keys needs.
inline bool json_key_precedes(const PathStep &a, const PathStep &b) {
    if (a.key_length != b.key_length)
        return a.key_length < b.key_length;
    return memcmp(a.key, b.key, a.key_length) < 0;
}

// Finds several keys of an object in one pass over its entries, instead of one binary
// search each. keys are sorted by json_key_precedes; found[i] tells whether keys[i] is
// present, values[i] is its value (nothing is found in a non-object).
void json_find_keys(JsonbContainer *object, const PathStep *keys, int key_count, JsonbValue *values,
                    bool *found);

// The value at path, given the value of its first step (found by json_find_keys).
bool json_path_find_from(const JsonbValue &first, const JsonPath &path, JsonbValue *found);

// Looks up one top-level key of a record object.
bool json_key_find(JsonbContainer *object, const char *key, JsonbValue *found);

// Human-readable JSON type name of a value ("string", "number", "object", ...).
const char *json_type_name(const JsonbValue &value);

} // namespace sequin
