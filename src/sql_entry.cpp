// The SQL entry points (extern "C", called through the function manager) and _PG_init.
#include "batch_applier.hpp"
#include "mapping_cache.hpp"
#include "mapping_compiler.hpp"
#include "pg_boundary.hpp"
#include "staging_trigger.hpp"
#include "stats.hpp"

extern "C" {
#include "postgres.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

PG_MODULE_MAGIC;

extern int sequin_batch_size;

void _PG_init(void);
PG_FUNCTION_INFO_V1(sequin_upsert);
PG_FUNCTION_INFO_V1(sequin_validate_mapping);
PG_FUNCTION_INFO_V1(sequin_mappings_changed);
PG_FUNCTION_INFO_V1(sequin_explain_mapping);
}

#include <vector>

namespace {

// text[] datum -> vector (guarded: detoasting and deconstruction can raise).
std::vector<std::string> text_array(Datum array) {
    int count = 0;
    char **items = sequin::pg_guard([&] {
        Datum *elements;
        bool *nulls;
        deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false, TYPALIGN_INT, &elements,
                          &nulls, &count);
        char **out = static_cast<char **>(palloc(sizeof(char *) * (count + 1)));
        for (int i = 0; i < count; i++)
            out[i] = nulls[i] ? nullptr : TextDatumGetCString(elements[i]);
        return out;
    });
    std::vector<std::string> result;
    for (int i = 0; i < count; i++) {
        if (!items[i])
            throw sequin::PgError(ERRCODE_NULL_VALUE_NOT_ALLOWED,
                                  "column lists in sequin.mappings must not contain NULL");
        result.emplace_back(items[i]);
    }
    return result;
}

// A sequin.mappings tuple as a MappingRow.
sequin::MappingRow mapping_row_of(HeapTuple tuple, TupleDesc desc) {
    sequin::MappingRow row;
    auto field = [&](const char *name, bool *isnull) {
        return sequin::pg_guard([&] {
            int attnum = SPI_fnumber(desc, name);
            if (attnum <= 0)
                elog(ERROR, "sequin.mappings has no column %s", name);
            return SPI_getbinval(tuple, desc, attnum, isnull);
        });
    };
    bool isnull;
    Datum value = field("collection_id", &isnull);
    if (isnull)
        throw sequin::PgError(ERRCODE_NOT_NULL_VIOLATION, "collection_id must not be null");
    row.collection_id = sequin::pg_guard([&] { return TextDatumGetCString(value); });
    value = field("target_table", &isnull);
    if (isnull)
        throw sequin::PgError(ERRCODE_NOT_NULL_VIOLATION, "mapping \"" + row.collection_id +
                                                              "\": target_table must not be null");
    row.target_table = DatumGetObjectId(value);
    value = field("columns", &isnull);
    if (isnull)
        throw sequin::PgError(ERRCODE_NOT_NULL_VIOLATION,
                              "mapping \"" + row.collection_id + "\": columns must not be null");
    row.columns_json = sequin::pg_guard([&] {
        Jsonb *jsonb = DatumGetJsonbP(value);
        return JsonbToCString(nullptr, &jsonb->root, VARSIZE(jsonb));
    });
    value = field("conflict_columns", &isnull);
    if (!isnull)
        row.conflict_columns = text_array(value);
    value = field("keep_on_conflict", &isnull);
    if (!isnull)
        row.keep_on_conflict = text_array(value);
    value = field("order_column", &isnull);
    if (!isnull)
        row.order_column = sequin::pg_guard([&] { return TextDatumGetCString(value); });
    value = field("on_delete", &isnull);
    row.on_delete =
        isnull ? "delete" : sequin::pg_guard([&] { return TextDatumGetCString(value); });
    value = field("required", &isnull);
    if (!isnull)
        row.required = text_array(value);
    return row;
}

} // namespace

void _PG_init(void) {
    DefineCustomIntVariable(
        "sequin.batch_size", "Records per set-based statement when applying a batch.", nullptr,
        &sequin_batch_size, 1000, 1, 1000000, PGC_USERSET, 0, nullptr, nullptr, nullptr);
    sequin_define_staging_settings();
    sequin_define_stats_settings();
    MarkGUCPrefixReserved("sequin");
    sequin::mapping_cache_register_callbacks();
}

// sequin.sequin_upsert(records jsonb): C-shaped; the applier raises with ereport directly.
Datum sequin_upsert(PG_FUNCTION_ARGS) {
    sequin::ApplyCounts counts;
    memset(&counts, 0, sizeof counts);
    if (!PG_ARGISNULL(0)) {
        int count = 0;
        sequin::InputRecord *records = sequin::records_of_argument(PG_GETARG_JSONB_P(0), &count);
        sequin::apply_records(records, count, sequin::ApplyMode::Atomic, nullptr, nullptr, &counts);
    }
    sequin::return_counts(fcinfo, counts);
    return (Datum)0;
}

// BEFORE INSERT OR UPDATE row trigger on sequin.mappings: refuse a bad mapping.
Datum sequin_validate_mapping(PG_FUNCTION_ARGS) {
    TriggerData *trigdata = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
        elog(ERROR, "sequin_validate_mapping must be called as a row trigger");
    HeapTuple tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple
                                                                  : trigdata->tg_trigtuple;
    TupleDesc desc = RelationGetDescr(trigdata->tg_relation);
    // In a restore (check_function_bodies off) the target's keys may not exist yet.
    const bool deferred = !check_function_bodies;
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    SEQUIN_ENTRY_BEGIN
    sequin::MappingRow row = mapping_row_of(tuple, desc);
    sequin::compile_mapping(row, deferred, !deferred); // prepares to prove the SQL plans
    SEQUIN_ENTRY_END
    SPI_finish();
    return PointerGetDatum(tuple);
}

// Statement trigger on sequin.mappings: every backend drops its compiled mappings.
Datum sequin_mappings_changed(PG_FUNCTION_ARGS) {
    TriggerData *trigdata = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!CALLED_AS_TRIGGER(fcinfo))
        elog(ERROR, "sequin_mappings_changed must be called as a trigger");
    CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
    return PointerGetDatum(nullptr);
}

// sequin.explain_mapping(collection_id): the statements run for a collection.
Datum sequin_explain_mapping(PG_FUNCTION_ARGS) {
    if (PG_ARGISNULL(0))
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                        errmsg("collection_id must not be null")));
    char *collection = text_to_cstring(PG_GETARG_TEXT_PP(0));
    InitMaterializedSRF(fcinfo, 0);
    ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    SEQUIN_ENTRY_BEGIN
    sequin::CompiledMapping *m = sequin::mapping_for(collection);
    struct Step {
        const char *name;
        const char *runs_as;
        const sequin::PreparedStatement *statement;
    };
    const Step steps[] = {
        {"lookup: stored versions of the batch's keys", "caller", &m->lookup},
        {"tombstone check: any deletes in this collection at all", "extension owner", &m->tomb_any},
        {"tombstone lookup: keys deleted at a newer version", "extension owner", &m->tomb_lookup},
        {"update keys stored with an older version (first, when recent chunks were updates)",
         "caller", &m->update_first},
        {"insert or update: new keys, and stored keys the update missed", "caller", &m->upsert},
        {"insert new keys, tried first (fails as a whole if one exists)", "caller",
         &m->insert_plain},
        {"insert new keys, when the plain insert failed", "caller", &m->insert_new},
        {"delete", "caller", &m->remove},
        {"tombstones for deletes", "extension owner", &m->tomb_upsert},
    };
    for (const Step &step : steps) {
        if (step.statement->sql.empty())
            continue;
        std::vector<std::string> parameters;
        for (size_t i = 0; i < step.statement->arg_descriptions.size(); i++)
            parameters.push_back("$" + std::to_string(i + 1) + " " +
                                 step.statement->arg_descriptions[i]);
        sequin::pg_guard([&] {
            Datum values[4];
            bool nulls[4] = {false, false, false, false};
            values[0] = CStringGetTextDatum(step.name);
            values[1] = CStringGetTextDatum(step.runs_as);
            values[2] = CStringGetTextDatum(step.statement->sql.c_str());
            Datum *items = static_cast<Datum *>(palloc(sizeof(Datum) * (parameters.size() + 1)));
            for (size_t i = 0; i < parameters.size(); i++)
                items[i] = CStringGetTextDatum(parameters[i].c_str());
            values[3] = PointerGetDatum(construct_array(items, static_cast<int>(parameters.size()),
                                                        TEXTOID, -1, false, TYPALIGN_INT));
            tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
        });
    }
    SEQUIN_ENTRY_END
    SPI_finish();
    return (Datum)0;
}
