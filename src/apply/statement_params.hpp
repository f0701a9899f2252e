// Parameters of the applier's statements: the batch travels as one array per column, in
// the order of the records chosen for the statement. C-shaped server code.
#pragma once

#include "apply/chunk.hpp"

namespace sequin {

struct StatementParams {
    Datum *values;
    char *nulls;
    int count;
    int capacity;
};

// Room for one array per mapped column, plus a few.
void params_init(StatementParams *params, const Chunk *chunk);
// Room for capacity parameters.
void params_init_room(StatementParams *params, int capacity);
void add_param(StatementParams *params, Datum value);

// The record numbers (chunk indexes) as an integer[]: statements return them to say which
// records they wrote or found.
Datum record_number_array(const int *records, int count);

// count values of a mapped column's type, as the array a statement expects for it.
Datum values_array(const MappedColumn &mapped, const Datum *values, const bool *nulls, int count);

// The values of column for records, as the array the statement expects.
Datum column_array(Chunk *chunk, int column, const int *records, int count);

// Replaces params with [record numbers,] key arrays [, versions] [, collection_id]: the
// shape of the look-up, delete and tombstone statements.
void key_params(Chunk *chunk, StatementParams *params, const int *records, int count,
                bool with_record_numbers, bool with_versions, bool with_collection);

// Runs statement (as the extension owner with as_owner: bookkeeping); returns the rows.
uint64 run_statement(Chunk *chunk, const PreparedStatement &statement, StatementParams *params,
                     bool as_owner);

} // namespace sequin
