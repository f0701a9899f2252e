// Walking mapping paths on the binary jsonb container, without converting to text.
#include "pg/json_path.hpp"

#include <cstring>

namespace sequin {

bool json_key_find(JsonbContainer *object, const char *key, JsonbValue *found) {
    if (!JsonContainerIsObject(object))
        return false;
    return getKeyJsonValueFromContainer(object, key, static_cast<int>(std::strlen(key)), found) !=
           nullptr;
}

bool json_path_find(JsonbContainer *root, const JsonPath &path, JsonbValue *found) {
    JsonbContainer *container = root;
    for (int i = 0; i < path.step_count; i++) {
        const PathStep &step = path.steps[i];
        if (JsonContainerIsObject(container)) {
            if (!getKeyJsonValueFromContainer(container, step.key, step.key_length, found))
                return false;
        } else if (JsonContainerIsArray(container) && step.array_index >= 0) {
            JsonbValue *element = getIthJsonbValueFromContainer(container, step.array_index);
            if (!element)
                return false;
            *found = *element;
            pfree(element);
        } else {
            return false;
        }
        if (i + 1 < path.step_count) {
            if (found->type != jbvBinary)
                return false;
            container = found->val.binary.data;
        }
    }
    return true;
}

// The value of entry index, which starts at offset of the data area (jsonb_util.c's
// fillJsonbValue, for a walk that knows each entry's offset and length).
static void entry_value(const JsonbContainer *container, int index, const char *base, uint32 offset,
                        uint32 length, JsonbValue *value) {
    JEntry entry = container->children[index];
    if (JBE_ISNULL(entry)) {
        value->type = jbvNull;
    } else if (JBE_ISSTRING(entry)) {
        value->type = jbvString;
        value->val.string.val = const_cast<char *>(base + offset);
        value->val.string.len = static_cast<int>(length);
    } else if (JBE_ISNUMERIC(entry)) {
        value->type = jbvNumeric;
        value->val.numeric = reinterpret_cast<Numeric>(const_cast<char *>(base + INTALIGN(offset)));
    } else if (JBE_ISBOOL_TRUE(entry) || JBE_ISBOOL_FALSE(entry)) {
        value->type = jbvBool;
        value->val.boolean = JBE_ISBOOL_TRUE(entry);
    } else { // a container, after its alignment padding
        value->type = jbvBinary;
        value->val.binary.data =
            reinterpret_cast<JsonbContainer *>(const_cast<char *>(base + INTALIGN(offset)));
        value->val.binary.len = static_cast<int>(length - (INTALIGN(offset) - offset));
    }
}

void json_find_keys(JsonbContainer *object, const PathStep *keys, int key_count, JsonbValue *values,
                    bool *found) {
    for (int k = 0; k < key_count; k++)
        found[k] = false;
    if (!JsonContainerIsObject(object))
        return;
    // An object stores all its keys, sorted, then the values in the same order; every entry
    // holds its length (or, every JB_OFFSET_STRIDE entries, its end offset).
    const int count = static_cast<int>(JsonContainerSize(object));
    const char *base = reinterpret_cast<const char *>(&object->children[count * 2]);
    int local[64]; // which key each entry is (-1: none); records rarely have more keys
    int *wanted = count <= 64 ? local : static_cast<int *>(palloc(sizeof(int) * count));
    uint32 offset = 0;
    int k = 0, last_wanted = -1;
    for (int i = 0; i < count; i++) {
        uint32 start = offset;
        JBE_ADVANCE_OFFSET(offset, object->children[i]);
        PathStep key{base + start, static_cast<int>(offset - start), -1};
        while (k < key_count && json_key_precedes(keys[k], key))
            k++;
        wanted[i] = -1;
        if (k < key_count && !json_key_precedes(key, keys[k])) {
            wanted[i] = k++;
            last_wanted = i;
        }
    }
    for (int i = 0; i <= last_wanted; i++) {
        uint32 start = offset;
        JBE_ADVANCE_OFFSET(offset, object->children[count + i]);
        if (wanted[i] >= 0) {
            entry_value(object, count + i, base, start, offset - start, &values[wanted[i]]);
            found[wanted[i]] = true;
        }
    }
    if (wanted != local)
        pfree(wanted);
}

bool json_path_find_from(const JsonbValue &first, const JsonPath &path, JsonbValue *found) {
    if (path.step_count == 1) {
        *found = first;
        return true;
    }
    if (first.type != jbvBinary)
        return false;
    return json_path_find(first.val.binary.data, JsonPath{path.step_count - 1, path.steps + 1},
                          found);
}

const char *json_type_name(const JsonbValue &value) {
    switch (value.type) {
    case jbvNull:
        return "null";
    case jbvString:
        return "string";
    case jbvNumeric:
        return "number";
    case jbvBool:
        return "boolean";
    case jbvArray:
        return "array";
    case jbvObject:
        return "object";
    case jbvBinary:
        return JsonContainerIsArray(value.val.binary.data) ? "array" : "object";
    default:
        return "unknown";
    }
}

} // namespace sequin
