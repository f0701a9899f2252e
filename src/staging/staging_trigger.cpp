// The staging trigger: an AFTER INSERT statement trigger with a transition table, which
// applies the new rows of a user's table with a jsonb column "record" (Atomic: a failed
// record fails the statement). On sequin.staging itself it runs only under the 0.1.0
// schema, until ALTER EXTENSION ... UPDATE replaces it with the capture triggers
// (staging_capture.cpp); there the rows are settled like apply_staging's. C-shaped.
#include "staging/staging_trigger.hpp"
#include "pg/run_as_owner.hpp"
#include "staging/staging_queue.hpp"

extern "C" {
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"
}

namespace sequin {

namespace {

int attribute_number(TupleDesc desc, const char *name, Oid type, bool required) {
    for (int i = 0; i < desc->natts; i++) {
        Form_pg_attribute att = TupleDescAttr(desc, i);
        if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0) {
            if (att->atttypid != type)
                ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                                errmsg("column \"%s\" of the staged table must be of type %s", name,
                                       format_type_be(type))));
            return i + 1;
        }
    }
    if (required)
        ereport(ERROR,
                (errcode(ERRCODE_UNDEFINED_COLUMN),
                 errmsg("a table with the staging trigger needs a jsonb column \"%s\"", name)));
    return 0;
}

} // namespace

// AFTER INSERT ... FOR EACH STATEMENT ... REFERENCING NEW TABLE: applies the new rows of a
// user's table (Atomic). On sequin.staging itself it runs only under the 0.1.0 schema, until
// ALTER EXTENSION ... UPDATE replaces it with the capture triggers (staging_capture.cpp).
void apply_transition_table(TriggerData *td) {
    Relation rel = td->tg_relation;
    Oid relid = RelationGetRelid(rel);
    const bool is_staging = relid == sequin_relation("staging");
    if (is_staging && apply_mode_is_deferred())
        return;

    TupleDesc desc = RelationGetDescr(rel);
    int record_att = attribute_number(desc, "record", JSONBOID, true);
    int id_att = is_staging ? attribute_number(desc, "id", INT8OID, true) : 0;
    Oid owner = is_staging ? sequin_relation_owner("staging") : InvalidOid;

    MemoryContext slice_context =
        AllocSetContextCreate(CurrentMemoryContext, "sequin staging slice", ALLOCSET_DEFAULT_SIZES);
    TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
    MemoryContext old = MemoryContextSwitchTo(slice_context);
    Tuplestorestate *rows = td->tg_newtable;
    tuplestore_rescan(rows);
    ApplyCounts total;
    memset(&total, 0, sizeof total);
    int64 ordinal = 0;
    bool more = true;
    if (is_staging && SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    while (more) {
        MemoryContextSwitchTo(slice_context);
        InputRecord *records =
            static_cast<InputRecord *>(palloc(sizeof(InputRecord) * kStagingSliceRows));
        int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * kStagingSliceRows));
        int n = 0;
        while (n < kStagingSliceRows && (more = tuplestore_gettupleslot(rows, true, false, slot))) {
            bool isnull;
            Datum record = slot_getattr(slot, record_att, &isnull);
            ids[n] = id_att ? DatumGetInt64(slot_getattr(slot, id_att, &isnull)) : ordinal;
            records[n].position = ids[n];
            records[n].label = is_staging ? "staging row" : "record";
            records[n].record = isnull ? nullptr : &DatumGetJsonbPCopy(record)->root;
            ordinal++;
            n++;
        }
        if (n > 0) {
            if (is_staging) {
                apply_staged_slice(owner, records, ids, n, &total);
            } else {
                ApplyCounts counts;
                apply_records(records, n, ApplyMode::Atomic, nullptr, nullptr, &counts);
            }
        }
        ExecClearTuple(slot);
        MemoryContextSwitchTo(old);
        MemoryContextReset(slice_context);
        CHECK_FOR_INTERRUPTS();
    }
    if (is_staging)
        SPI_finish();
    ExecDropSingleTupleTableSlot(slot);
    MemoryContextSwitchTo(old);
    MemoryContextDelete(slice_context);
}

} // namespace sequin
