// Races between a delete and an insert of one key in two transactions, settled the way
// PostgreSQL settles unique checks: each side writes first (the row, or the tombstone), then
// looks for the other's write with a dirty snapshot. At least one of two racing writers
// sees the other. A write found in progress is waited for when its writer is younger (a
// later transaction id), or yielded to when it is older: the yielding side rolls its
// statement back, waits, and runs it again, so no two writers wait for each other. A write
// found committed (it came after this statement's look-up) means the statement was based on
// an old picture: at READ COMMITTED it runs again (looked up anew); at REPEATABLE READ and
// above it raises 40001, as PostgreSQL does. Either way the outcome is one of the two serial
// orders: never a row beside a newer tombstone. C-shaped server code.
#pragma once

#include "apply/chunk.hpp"

namespace sequin {

// After a statement that may have inserted rows for records (keys not stored when looked
// up): a tombstone as new as a record, written by another transaction meanwhile. Without
// may_wait, a writer in progress is always yielded to (the statement holds later keys).
void settle_inserts(Chunk *chunk, const int *records, int count, bool may_wait = true);

// After the DELETE of records (and their tombstones): a row of such a key, older than the
// delete, written by another transaction meanwhile.
void settle_deletes(Chunk *chunk, const int *records, int count, bool may_wait = true);

// Is the first record still to upsert stored already? One index probe (write_strategy: a
// chunk of new keys says no; a replay says yes, before anything is written).
bool first_upsert_is_stored(Chunk *chunk);

// Of records (upserts just written by an INSERT), how many did this transaction insert (a
// first row version of its own), rather than update or leave to another session's row? Sets
// inserted_flags[i] for those (when not NULL).
// -1 when it cannot tell (not a heap).
int count_inserted_here(Chunk *chunk, const int *records, int count, bool *inserted_flags);

// Of records (just written), which rows did this transaction write (insert or update) at
// command since or later: sets written[i]. False when it cannot tell (not a heap).
bool rows_written_since(Chunk *chunk, const int *records, int count, CommandId since,
                        bool *written);

// Is the error just caught a write conflict raised here, to retry: any at READ COMMITTED;
// above, one that yields to a writer in progress (which may still roll back)?
bool write_conflict_retryable(int sqlstate);

// Was the error just caught a write conflict raised here? Then *yield_to is the transaction
// to wait for first (or InvalidTransactionId), and *at the place in the statement's records
// of the key it was met at (-1: the statement as a whole). Clears it.
bool take_write_conflict(int sqlstate, TransactionId *yield_to, int *at);

} // namespace sequin
