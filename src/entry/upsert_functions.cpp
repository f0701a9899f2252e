// sequin.sequin_upsert(records jsonb): the records of the argument, applied atomically.
#include "apply/apply_records.hpp"
#include "entry/counts_result.hpp"
#include "entry/entry_point.hpp"

namespace {

// Records of one sequin_upsert() argument: an object, or the elements of an array.
// Raises 22023 for anything else.
sequin::InputRecord *records_of_argument(Jsonb *records, int *count) {
    if (JB_ROOT_IS_SCALAR(records))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("records must be a JSON object or an array of objects, not a "
                               "scalar")));
    if (JB_ROOT_IS_OBJECT(records)) {
        auto *one = static_cast<sequin::InputRecord *>(palloc(sizeof(sequin::InputRecord)));
        one->record = &records->root;
        one->position = 0;
        one->label = "record";
        *count = 1;
        return one;
    }
    int n = JB_ROOT_COUNT(records);
    auto *all =
        static_cast<sequin::InputRecord *>(palloc(sizeof(sequin::InputRecord) * (n ? n : 1)));
    JsonbIterator *it = JsonbIteratorInit(&records->root);
    JsonbValue value;
    JsonbIteratorToken token;
    int i = 0;
    while ((token = JsonbIteratorNext(&it, &value, true)) != WJB_DONE) {
        if (token != WJB_ELEM)
            continue;
        all[i].position = i;
        all[i].label = "record";
        all[i].record = value.type == jbvBinary ? value.val.binary.data : nullptr;
        i++;
    }
    *count = i;
    return all;
}

} // namespace

// C-shaped: the applier raises with ereport directly.
SEQUIN_FUNCTION(sequin_upsert) {
    sequin::ApplyCounts counts;
    memset(&counts, 0, sizeof counts);
    if (!PG_ARGISNULL(0)) {
        int count = 0;
        sequin::InputRecord *records = records_of_argument(PG_GETARG_JSONB_P(0), &count);
        sequin::apply_records(records, count, sequin::ApplyMode::Atomic, nullptr, nullptr, &counts);
    }
    sequin::return_counts(fcinfo, counts);
    return (Datum)0;
}
