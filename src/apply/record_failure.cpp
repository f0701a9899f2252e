// What happens to a record that fails: its error names it (array index or staging row, id,
// collection_id) and the column; then it is raised (Atomic) or reported (Isolate).
#include "apply/chunk.hpp"
#include "pg/json_path.hpp"

extern "C" {
#include "utils/builtins.h"
#include "utils/numeric.h"
}

namespace sequin {

namespace {

void append_json_scalar(StringInfo out, JsonbContainer *record, const char *key) {
    JsonbValue value;
    if (!record || !json_key_find(record, key, &value)) {
        appendStringInfoString(out, "none");
    } else if (value.type == jbvString) {
        appendStringInfo(out, "\"%.*s\"", value.val.string.len, value.val.string.val);
    } else if (value.type == jbvNumeric) {
        appendStringInfoString(out, DatumGetCString(DirectFunctionCall1(
                                        numeric_out, NumericGetDatum(value.val.numeric))));
    } else {
        appendStringInfoString(out, json_type_name(value));
    }
}

// "record 3 (id "sub_1", collection_id "stripe:subscription")", and for a list element the
// record it is in, then ": child collection "stripe:subscription_item" element 2 (id "si_1")".
void describe_input(StringInfo out, const InputRecord &input, const CallSettings &call) {
    if (call.elements) {
        const ElementSource &element = call.elements[&input - call.inputs];
        const CallSettings &parent = *call.parent_call;
        describe_input(out, parent.inputs[element.parent_input], parent);
        appendStringInfo(out, ": child collection \"%s\" element %d (id ", call.child_collection,
                         element.list_index);
        append_json_scalar(out, input.record, "id");
        appendStringInfoChar(out, ')');
        return;
    }
    appendStringInfo(out, "%s %lld (id ", input.label, static_cast<long long>(input.position));
    append_json_scalar(out, input.record, "id");
    appendStringInfoString(out, ", collection_id ");
    append_json_scalar(out, input.record, "collection_id");
    appendStringInfoChar(out, ')');
}

// "record 3 (id "sub_1", collection_id "stripe:subscription"): column "quantity": <reason>"
char *describe_failure(const InputRecord &input, const char *column, const char *reason,
                       const CallSettings &call) {
    StringInfoData out;
    initStringInfo(&out);
    describe_input(&out, input, call);
    appendStringInfoString(&out, ": ");
    if (column)
        appendStringInfo(&out, "column \"%s\": ", column);
    appendStringInfoString(&out, reason);
    return out.data;
}

} // namespace

bool names_input(const char *message, const InputRecord &input, const CallSettings &call) {
    StringInfoData named;
    initStringInfo(&named);
    describe_input(&named, input, call);
    bool names = strncmp(message, named.data, named.len) == 0;
    pfree(named.data);
    return names;
}

void fail_record(const InputRecord &input, const char *column, ErrorData *error,
                 const CallSettings &call) {
    // An error raised by a child's (Atomic) call names the record already.
    const char *reason = error->message ? error->message : "error";
    char *message = names_input(reason, input, call)
                        ? pstrdup(reason)
                        : describe_failure(input, column, reason, call);
    if (call.mode == ApplyMode::Atomic) {
        error->message = message;
        error->context = nullptr;
        ReThrowError(error);
    }
    // Reported as text (sequin.staging.error): the detail and the hint go with the message.
    if (error->detail)
        message = psprintf("%s (detail: %s)", message, error->detail);
    if (error->hint)
        message = psprintf("%s (hint: %s)", message, error->hint);
    call.counts->failed++;
    call.on_failure(call.callback_arg, static_cast<int>(&input - call.inputs), error->sqlerrcode,
                    message);
}

void fail_chunk_record(Chunk *chunk, int record, const char *column, ErrorData *error) {
    chunk->state[record] = Done;
    if (chunk->failed)
        chunk->failed[record] = true;
    fail_record(chunk->inputs[chunk->members[record]], column, error, *chunk->call);
}

void fail_input(const InputRecord &input, int sqlstate, const char *reason,
                const CallSettings &call) {
    char *message = describe_failure(input, nullptr, reason, call);
    // Raised by ereport, not re-thrown from an ErrorData made by hand: such an error would
    // not be sent to the client or the log (its output flags unset).
    if (call.mode == ApplyMode::Atomic)
        ereport(ERROR, (errcode(sqlstate), errmsg_internal("%s", message)));
    call.counts->failed++;
    call.on_failure(call.callback_arg, static_cast<int>(&input - call.inputs), sqlstate, message);
}

} // namespace sequin
