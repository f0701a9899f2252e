// Converting a chunk's records, in two phases: first what each record is (upsert or delete)
// and its identity (key and version), so that stale records can be skipped before anything
// else is converted (a replay converts keys and versions only); then the other values of the
// records that will be written. A record's JSON is walked in place.
#include "apply/chunk.hpp"
#include "pg/fixed_settings.hpp"
#include "apply/write_isolation.hpp"
#include "pg/json_path.hpp"
#include "pg/value_converter.hpp"

extern "C" {
#include "common/hashfn.h"
#include "utils/numeric.h"
}

namespace sequin {

namespace {

// Appends a key column's value to key as (length, bytes) of its binary form: the order in
// which keys are written (any order all sessions share will do).
void append_key_part(StringInfo key, const ValueType *type, Datum value) {
    const char *bytes;
    int length;
    if (type->typbyval) {
        bytes = reinterpret_cast<const char *>(&value);
        length = sizeof(Datum);
    } else if (type->typlen == -1) {
        struct varlena *varlena = PG_DETOAST_DATUM_PACKED(value);
        bytes = VARDATA_ANY(varlena);
        length = VARSIZE_ANY_EXHDR(varlena);
    } else if (type->typlen > 0) {
        bytes = DatumGetPointer(value);
        length = type->typlen;
    } else {
        bytes = DatumGetCString(value);
        length = strlen(bytes);
    }
    appendBinaryStringInfo(key, reinterpret_cast<const char *>(&length), sizeof length);
    appendBinaryStringInfo(key, bytes, length);
}

// Finds the top-level values of a phase's keys in the record: one pass over its entries.
void find_top_values(Chunk *chunk, const InputRecord &input, const std::vector<PathStep> &keys) {
    if (!input.record) { // a list element that is not an object
        for (size_t k = 0; k < keys.size(); k++)
            chunk->top_found[k] = false;
        return;
    }
    json_find_keys(input.record, keys.data(), static_cast<int>(keys.size()), chunk->top_values,
                   chunk->top_found);
}

// The value of a column with a special source, for the input (a list element) at input.
bool find_special_value(Chunk *chunk, const MappedColumn &column, int input, JsonbValue *value) {
    const ElementSource &element = chunk->call->elements[input];
    switch (column.kind) {
    case SourceKind::ParentPath:
        return element.parent_root && json_path_find(element.parent_root, column.path, value);
    case SourceKind::Index:
        value->type = jbvNumeric;
        value->val.numeric = int64_to_numeric(element.list_index);
        return true;
    case SourceKind::Element:
        *value = element.element;
        return true;
    default:
        return false;
    }
}

// Converts column i of the record whose top-level values were found last (values and
// nulls are the record's row; input is the record's index in the call's inputs).
void convert_column(Chunk *chunk, int i, Datum *values, bool *nulls, int input) {
    MappedColumn &column = chunk->mapping->columns[i];
    JsonbValue value;
    chunk->column = column.name.c_str();
    bool found =
        column.kind == SourceKind::Path
            ? chunk->top_found[column.key_slot] &&
                  json_path_find_from(chunk->top_values[column.key_slot], column.path, &value)
            : find_special_value(chunk, column, input, &value);
    if (!found || value.type == jbvNull) {
        if (column.required)
            ereport(ERROR, (errcode(ERRCODE_NOT_NULL_VIOLATION),
                            errmsg("required value is missing (source path has no value)")));
        value_check_null(column.type);
        return;
    }
    values[i] = value_convert(column.type, &value);
    nulls[i] = false;
}

// The record's "deleted" flag: a boolean, or absent or null (false).
bool record_is_delete(Chunk *chunk) {
    int slot = chunk->mapping->deleted_slot;
    if (!chunk->top_found[slot])
        return false;
    const JsonbValue &value = chunk->top_values[slot];
    if (value.type == jbvBool)
        return value.val.boolean;
    if (value.type != jbvNull)
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("\"deleted\" must be a boolean, not a JSON %s", json_type_name(value))));
    return false;
}

} // namespace

void convert_identity(Chunk *chunk, int record) {
    CompiledMapping *mapping = chunk->mapping;
    const InputRecord &input = chunk->inputs[chunk->members[record]];
    Datum *values = row_values(chunk, record);
    bool *nulls = row_nulls(chunk, record);
    chunk->column = nullptr;

    // A list element whose columns are read from its keys must be an object ("$element" and
    // "$index" read any).
    if (mapping->is_child && !input.record &&
        mapping->identity_keys.size() + mapping->value_keys.size() > 1)
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("the list element is a JSON %s, not an object",
                        json_type_name(chunk->call->elements[chunk->members[record]].element))));
    find_top_values(chunk, input, mapping->identity_keys);
    // A list element is upserted whatever it says: its row goes only with its list or parent.
    bool is_delete = !mapping->is_child && record_is_delete(chunk);
    if (is_delete && mapping->on_delete == OnDelete::Ignore) {
        chunk->state[record] = Done;
        chunk->call->counts->skipped++;
        return;
    }
    if (is_delete && mapping->on_delete == OnDelete::Upsert)
        is_delete = false;

    for (int i = 0; i < chunk->column_count; i++) {
        const MappedColumn &column = mapping->columns[i];
        nulls[i] = true;
        values[i] = (Datum)0;
        if (column.is_key || column.is_order)
            convert_column(chunk, i, values, nulls, chunk->members[record]);
        if (column.is_key && nulls[i]) // even when not listed in "required"
            ereport(ERROR, (errcode(ERRCODE_NOT_NULL_VIOLATION),
                            errmsg("conflict column value is missing: a record needs its key")));
    }
    chunk->column = nullptr;

    StringInfo key = &chunk->key_scratch;
    resetStringInfo(key);
    uint32 hash = 0;
    for (size_t k = 0; k < mapping->key_columns.size(); k++) {
        int column = mapping->key_columns[k];
        append_key_part(key, mapping->columns[column].type, values[column]);
        hash = hash_combine(hash, key_column_hash(mapping, static_cast<int>(k), values[column]));
    }
    RecordKey &stored_key = chunk->keys[record];
    stored_key.bytes = static_cast<char *>(palloc(key->len));
    memcpy(stored_key.bytes, key->data, key->len);
    stored_key.length = key->len;
    stored_key.hash = hash;
    chunk->state[record] = is_delete ? Delete : Upsert;
}

void convert_values(Chunk *chunk, int record) {
    if (chunk->state[record] != Upsert)
        return;
    const InputRecord &input = chunk->inputs[chunk->members[record]];
    Datum *values = row_values(chunk, record);
    bool *nulls = row_nulls(chunk, record);
    find_top_values(chunk, input, chunk->mapping->value_keys);
    for (int i = 0; i < chunk->column_count; i++) {
        const MappedColumn &column = chunk->mapping->columns[i];
        if (!column.is_now && !column.is_key && !column.is_order)
            convert_column(chunk, i, values, nulls, chunk->members[record]);
    }
    int source = chunk->keep_source[record];
    if (source >= 0) { // an earlier record of the key inserts: its keep_on_conflict values
        find_top_values(chunk, chunk->inputs[chunk->members[source]], chunk->mapping->value_keys);
        for (int i = 0; i < chunk->column_count; i++) {
            const MappedColumn &column = chunk->mapping->columns[i];
            if (column.keep_on_conflict && !column.is_now && !column.is_key && !column.is_order)
                convert_column(chunk, i, values, nulls, chunk->members[source]);
        }
    }
    chunk->column = nullptr;
}

namespace {

// A failing record: Atomic raises its error; Isolate rolls back the step's subtransaction (a
// domain's CHECK may have run any SQL), reports the record, and resumes after it.
void convert_records(Chunk *chunk, RecordStep step) {
    if (chunk->call->mode == ApplyMode::Atomic) {
        MemoryContext context = CurrentMemoryContext;
        PG_TRY();
        {
            for (; chunk->next < chunk->count; chunk->next++)
                step(chunk, chunk->next);
        }
        PG_CATCH();
        {
            MemoryContextSwitchTo(context);
            ErrorData *error = CopyErrorData();
            FlushErrorState();
            fail_chunk_record(chunk, chunk->next, chunk->column, error);
        }
        PG_END_TRY();
        return;
    }
    while (chunk->next < chunk->count) {
        ErrorData *error = try_in_subtransaction([chunk, step] {
            for (; chunk->next < chunk->count; chunk->next++)
                step(chunk, chunk->next);
        });
        if (error) {
            fail_chunk_record(chunk, chunk->next, chunk->column, error);
            chunk->next++;
        }
    }
}

} // namespace

void convert_chunk(Chunk *chunk, RecordStep step) {
    chunk->next = 0;
    // Left below, or on an error by the (sub)transaction's abort.
    int settings = enter_input_settings();
    convert_records(chunk, step);
    leave_fixed_settings(settings);
}

} // namespace sequin
