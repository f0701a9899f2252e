// Converting one JSON value into a Datum of a target column's type (SPEC: "Converting
// values to column types"). Server code: errors are ereport'ed, so callers run it where a
// longjmp skips no C++ destructor (directly from C-shaped code, or under pg_guard).
#pragma once

extern "C" {
#include "postgres.h"
#include "fmgr.h"
#include "utils/jsonb.h"
}

namespace sequin {

// What the converter does, chosen once from the column's base type.
enum class ConvKind {
    Text,      // text: JSON string as is, numbers and booleans as their JSON text
    TextInput, // varchar, bpchar, name: like Text, through the input function (typmod)
    Json,
    Jsonb,
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric,
    Float4,
    Float8,
    Timestamp,
    TimestampTz,
    Date,
    Array,
    Other // strings through the type's input function; nothing else
};

struct ValueType {
    Oid type_oid; // the column's declared type (maybe a domain)
    int32 typmod;
    Oid base_oid; // after looking through domains
    int32 base_typmod;
    bool is_domain;
    int16 typlen; // storage of the declared type, for building parameter arrays
    bool typbyval;
    char typalign;
    ConvKind kind;
    FmgrInfo input_fn; // base type's input function
    Oid input_ioparam;
    int16 elem_len; // for arrays: element storage
    bool elem_byval;
    char elem_align;
    ValueType *element;    // for arrays: the element type
    void *domain_cache;    // domain_check's cache
    MemoryContext context; // where caches live
};

// Fills vt for a column of type type_oid/typmod; caches go into context.
void value_type_init(ValueType *vt, Oid type_oid, int32 typmod, MemoryContext context);

// Converts value (never NULL here: a JSON null or absent path is handled by the caller,
// which still calls value_convert_null for domains) into a Datum of vt's type.
Datum value_convert(ValueType *vt, const JsonbValue *value);

// A SQL NULL for vt: checks NOT NULL domains.
void value_check_null(ValueType *vt);

// True when a timestamp string carries a UTC offset or zone ("Z", "+02:00", " UTC").
bool timestamp_text_has_zone(const char *text, int length);

} // namespace sequin
