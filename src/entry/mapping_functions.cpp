// The catalog's functions: the validation trigger of sequin.mappings, its invalidation
// trigger, and sequin.explain_mapping(collection_id). C++ zone: server calls are guarded.
#include "entry/entry_point.hpp"
#include "mapping/mapping_cache.hpp"
#include "mapping/mapping_compiler.hpp"
#include "pg/error_boundary.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"
}

#include <string>
#include <vector>

// BEFORE INSERT OR UPDATE row trigger on sequin.mappings: refuse a bad mapping.
SEQUIN_FUNCTION(sequin_validate_mapping) {
    TriggerData *trigdata = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
        throw sequin::PgError(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                              "sequin_validate_mapping must be called as a row trigger");
    HeapTuple tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple
                                                                  : trigdata->tg_trigtuple;
    TupleDesc desc = RelationGetDescr(trigdata->tg_relation);
    // In a restore (check_function_bodies off) the target's keys may not exist yet.
    const bool deferred = !check_function_bodies;
    sequin::pg_guard([] {
        if (SPI_connect() != SPI_OK_CONNECT)
            elog(ERROR, "SPI_connect failed");
    });
    sequin::MappingRow row = sequin::mapping_row_of(tuple, desc);
    sequin::compile_mapping(row, deferred, !deferred); // prepares to prove the SQL plans
    if (!deferred && TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
        sequin::check_child_mappings(row);
    sequin::pg_guard([] { SPI_finish(); });
    return PointerGetDatum(tuple);
}

// Statement trigger on sequin.mappings: every backend drops its compiled mappings.
SEQUIN_FUNCTION(sequin_mappings_changed) {
    TriggerData *trigdata = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!CALLED_AS_TRIGGER(fcinfo))
        elog(ERROR, "sequin_mappings_changed must be called as a trigger");
    CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
    return PointerGetDatum(nullptr);
}

namespace {

struct ExplainStep {
    const char *name;
    const char *runs_as;
    const sequin::PreparedStatement *statement;
};

// One row of explain_mapping: step, runs_as, statement, parameters.
void put_step(ReturnSetInfo *rsinfo, const ExplainStep &step,
              const std::vector<std::string> &parameters) {
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

// prefix: "" for the mapping explained, "child <collection>: " for its child mappings'.
void put_steps(ReturnSetInfo *rsinfo, const ExplainStep *steps, size_t count,
               const std::string &prefix = {}) {
    for (size_t s = 0; s < count; s++) {
        const ExplainStep &step = steps[s];
        if (step.statement->sql.empty())
            continue;
        std::vector<std::string> parameters;
        for (size_t i = 0; i < step.statement->arg_descriptions.size(); i++)
            parameters.push_back("$" + std::to_string(i + 1) + " " +
                                 step.statement->arg_descriptions[i]);
        std::string name = prefix + step.name;
        ExplainStep named = {name.c_str(), step.runs_as, step.statement};
        put_step(rsinfo, named, parameters);
    }
}

// On Citus (README "Running on Citus"): every chunk is looked up, and upserts are
// INSERT ... VALUES, one row per record, each value a parameter.
void explain_citus(ReturnSetInfo *rsinfo, const sequin::CompiledMapping &m) {
    sequin::PreparedStatement values;
    std::string row;
    int n = 0;
    for (const sequin::MappedColumn &c : m.columns) {
        row += row.empty() ? "(" : ", ";
        if (c.is_now) {
            row += c.values_sql;
            continue;
        }
        row += "$" + std::to_string(++n) + c.values_sql;
        values.arg_descriptions.push_back(c.name + " (of the first record; $" +
                                          std::to_string(n + static_cast<int>(m.columns.size())) +
                                          ".. the next)");
    }
    values.sql = m.values_head + row + "), ... (a row per record)" + m.values_tail;
    const ExplainStep steps[] = {
        {"shard of each key (Citus)", "caller", &m.shard_of},
        {"lookup: stored versions of the keys of one shard", "caller", &m.lookup},
        {"insert or update: the upserts of one shard, in key order between its deletes", "caller",
         &values},
        {"delete: the deletes of one shard", "caller", &m.remove},
        {"tombstones for deletes (in the coordinator's sequin.tombstones)", "extension owner",
         &m.tomb_insert},
    };
    put_steps(rsinfo, steps, sizeof steps / sizeof steps[0]);
}

// The statements of a mapping, then its child mappings', each step's name after prefix.
void explain_local(ReturnSetInfo *rsinfo, const std::string &collection,
                   const std::string &prefix) {
    sequin::CompiledMapping *m = sequin::mapping_for(collection);
    if (m->citus != sequin::CitusKind::None) {
        explain_citus(rsinfo, *m);
        return;
    }
    const ExplainStep steps[] = {
        {"lookup: stored versions of the batch's keys", "caller", &m->lookup},
        {"insert or update: new and stored keys, in key order between a chunk's deletes", "caller",
         &m->upsert},
        {"insert new keys, tried first (fails as a whole if one exists)", "caller",
         &m->insert_plain},
        {"insert new keys, when the plain insert failed", "caller", &m->insert_new},
        {"delete", "caller", &m->remove},
        {"looked-up chunk in one statement, in key order (else the runs above)", "caller",
         &m->merge_write},
        {"the same without deletes, and the update-first shortcut (all or nothing)", "caller",
         &m->merge_upserts},
        {"tombstones for deletes (looked up in C by (collection_id, key_hash), compared as typed "
         "values with the caller's rights)",
         "extension owner", &m->tomb_insert},
        {"elements as updates of their stored rows (the others are inserted next)", "caller",
         &m->update_listed},
        {"rows of applied parents not in their lists, and of deleted parents (one statement per "
         "chunk of parents)",
         "caller", &m->remove_unlisted},
    };
    put_steps(rsinfo, steps, sizeof steps / sizeof steps[0], prefix);
    std::vector<std::string> children = m->children; // m may be recompiled by the next call
    for (const std::string &child : children)
        explain_local(rsinfo, child, prefix + "child " + child + ": ");
}

} // namespace

// sequin.explain_mapping(collection_id): the statements run for a collection.
SEQUIN_FUNCTION(sequin_explain_mapping) {
    if (PG_ARGISNULL(0))
        throw sequin::PgError(ERRCODE_NULL_VALUE_NOT_ALLOWED, "collection_id must not be null");
    char *collection = sequin::pg_guard([&] { return text_to_cstring(PG_GETARG_TEXT_PP(0)); });
    ReturnSetInfo *rsinfo = sequin::pg_guard([&] {
        InitMaterializedSRF(fcinfo, 0);
        if (SPI_connect() != SPI_OK_CONNECT)
            elog(ERROR, "SPI_connect failed");
        return reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    });
    explain_local(rsinfo, collection, "");
    sequin::pg_guard([] { SPI_finish(); });
    return (Datum)0;
}
