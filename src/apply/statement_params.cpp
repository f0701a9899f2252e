// Statement parameters: see statement_params.hpp.
#include "apply/statement_params.hpp"
#include "pg/fixed_settings.hpp"
#include "pg/kept_plan.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
}

namespace sequin {

void params_init_room(StatementParams *params, int capacity) {
    params->capacity = capacity;
    params->values = static_cast<Datum *>(palloc(sizeof(Datum) * (capacity + 1)));
    params->nulls = static_cast<char *>(palloc(capacity + 1));
    params->count = 0;
    params->nulls[0] = '\0';
}

void params_init(StatementParams *params, const Chunk *chunk) {
    params_init_room(params, chunk->column_count + 10); // the tombstone insert has 9
}

void add_param(StatementParams *params, Datum value) {
    if (params->count >= params->capacity)
        elog(ERROR, "sequin_upsert: too many statement parameters");
    params->values[params->count] = value;
    params->nulls[params->count] = ' ';
    params->count++;
    params->nulls[params->count] = '\0';
}

Datum record_number_array(const int *records, int count) {
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (count ? count : 1)));
    for (int i = 0; i < count; i++)
        elements[i] = Int32GetDatum(records[i]);
    return PointerGetDatum(construct_array(elements, count, INT4OID, 4, true, TYPALIGN_INT));
}

Datum values_array(const MappedColumn &mapped, const Datum *values, const bool *nulls, int count) {
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (count ? count : 1)));
    Oid output_fn = InvalidOid;
    bool varlena;
    // Values passed as text (arrays, say) are written under fixed settings, in forms that
    // read back the same under any (extra_float_digits 3: a float8[] stays exact).
    int settings = -1;
    if (mapped.param_as_text) {
        getTypeOutputInfo(mapped.type->type_oid, &output_fn, &varlena);
        settings = enter_fixed_settings();
    }
    for (int i = 0; i < count; i++) {
        elements[i] = values[i];
        if (mapped.param_as_text && !nulls[i])
            elements[i] = CStringGetTextDatum(OidOutputFunctionCall(output_fn, values[i]));
    }
    if (settings >= 0)
        leave_fixed_settings(settings);
    int dims[1] = {count};
    int lower_bounds[1] = {1};
    bool *element_nulls = const_cast<bool *>(nulls);
    if (mapped.param_as_text)
        return PointerGetDatum(construct_md_array(elements, element_nulls, 1, dims, lower_bounds,
                                                  TEXTOID, -1, false, TYPALIGN_INT));
    const ValueType *type = mapped.type;
    return PointerGetDatum(construct_md_array(elements, element_nulls, 1, dims, lower_bounds,
                                              type->type_oid, type->typlen, type->typbyval,
                                              type->typalign));
}

Datum column_array(Chunk *chunk, int column, const int *records, int count) {
    Datum *values = static_cast<Datum *>(palloc(sizeof(Datum) * (count ? count : 1)));
    bool *nulls = static_cast<bool *>(palloc(sizeof(bool) * (count ? count : 1)));
    for (int i = 0; i < count; i++) {
        nulls[i] = row_nulls(chunk, records[i])[column];
        values[i] = row_values(chunk, records[i])[column];
    }
    return values_array(chunk->mapping->columns[column], values, nulls, count);
}

void key_params(Chunk *chunk, StatementParams *params, const int *records, int count,
                bool with_record_numbers, bool with_versions, bool with_collection) {
    CompiledMapping *mapping = chunk->mapping;
    params->count = 0;
    if (with_record_numbers)
        add_param(params, record_number_array(records, count));
    for (int k : mapping->key_columns)
        add_param(params, column_array(chunk, k, records, count));
    if (with_versions)
        add_param(params, column_array(chunk, mapping->order_column, records, count));
    if (with_collection)
        add_param(params, CStringGetTextDatum(mapping->row.collection_id.c_str()));
}

uint64 run_statement(Chunk *chunk, const PreparedStatement &statement, StatementParams *params,
                     bool as_owner) {
    PlanRun how;
    how.nested_loop_only = statement.join_in_batch_order;
    // Bookkeeping statements touch the extension's own tables, not the caller's.
    if (as_owner)
        how.as_user = chunk->call->bookkeeping_owner;
    // Citus writes the parameters' values into the text it sends to the workers with the
    // session's settings, and the workers read it with theirs: fixed, unambiguous forms.
    int settings = chunk->mapping->citus != CitusKind::None ? enter_fixed_settings() : -1;
    uint64 rows =
        run_kept_plan(statement.plan, statement.sql.c_str(), params->values, params->nulls, how);
    if (settings >= 0)
        leave_fixed_settings(settings);
    return rows;
}

} // namespace sequin
