// Per-backend cache of compiled mappings with relcache-driven invalidation.
#include "mapping/mapping_cache.hpp"
#include "mapping/mapping_compiler.hpp"
#include "pg/error_boundary.hpp"

extern "C" {
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "storage/bufmgr.h"
#include "utils/rel.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
}

#include <memory>
#include <unordered_map>

namespace sequin {

namespace {

std::unordered_map<std::string, std::unique_ptr<CompiledMapping>> cache;
Oid cached_catalog_oid = InvalidOid;                   // sequin.mappings when the cache was filled
std::vector<std::unique_ptr<CompiledMapping>> retired; // replaced while pinned

// At transaction end no call is running: pins held by an aborted call are released.
void on_transaction_end(XactEvent event, void *) {
    if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
        event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
        return;
    for (auto &entry : cache)
        entry.second->pins = 0;
    retired.clear();
}

// Marks entries stale; they are rebuilt lazily. Never frees: a mapping may be in use.
void on_relcache_invalidation(Datum, Oid relid) {
    for (auto &entry : cache) {
        CompiledMapping &m = *entry.second;
        if (relid == InvalidOid || relid == cached_catalog_oid || relid == m.row.target_table ||
            relid == m.parent_target)
            m.stale = true;
    }
}

Oid catalog_oid() {
    return pg_guard([] {
        Oid nsp = get_namespace_oid("sequin", true);
        return OidIsValid(nsp) ? get_relname_relid("mappings", nsp) : InvalidOid;
    });
}

// The number of blocks of a local table (not guarded: the caller guards).
BlockNumber table_blocks(Oid relid) {
    Relation rel = table_open(relid, AccessShareLock);
    BlockNumber blocks = RelationGetNumberOfBlocks(rel);
    table_close(rel, AccessShareLock);
    return blocks;
}

// Has the target grown so much since the statements were planned that their plans may no
// longer fit it? (PostgreSQL remakes a kept generic plan only when the table's definition or
// statistics change, not as it grows.)
bool outgrown(const CompiledMapping &m) {
    if (!m.tracks_size)
        return false;
    Oid relid = m.row.target_table;
    BlockNumber blocks = pg_guard([&] { return table_blocks(relid); });
    return blocks > 2 * m.planned_blocks + 2;
}

} // namespace

CompiledMapping *mapping_for(const std::string &collection_id) {
    Oid catalog = catalog_oid();
    if (catalog != cached_catalog_oid) { // extension (re)created: nothing cached is valid
        for (auto &entry : cache)
            if (entry.second->pins)
                retired.push_back(std::move(entry.second));
        cache.clear();
        cached_catalog_oid = catalog;
    }
    auto found = cache.find(collection_id);
    if (found != cache.end()) {
        if (!found->second->stale && !outgrown(*found->second))
            return found->second.get();
        if (found->second->pins) // in use by an outer call: free it at transaction end
            retired.push_back(std::move(found->second));
        cache.erase(found);
    }
    MappingRow row = fetch_mapping_row(collection_id);
    std::unique_ptr<CompiledMapping> compiled = compile_mapping(row, false, true);
    if (compiled->citus == CitusKind::None &&
        pg_guard([&] { return get_rel_relkind(row.target_table) == RELKIND_RELATION; })) {
        compiled->tracks_size = true;
        Oid relid = row.target_table;
        compiled->planned_blocks = pg_guard([&] { return table_blocks(relid); });
    }
    pg_guard(
        [&] { elog(DEBUG1, "sequin_upsert: compiled mapping \"%s\"", collection_id.c_str()); });
    CompiledMapping *result = compiled.get();
    cache[collection_id] = std::move(compiled);
    return result;
}

void mapping_cache_register_callbacks() {
    CacheRegisterRelcacheCallback(on_relcache_invalidation, (Datum)0);
    RegisterXactCallback(on_transaction_end, nullptr);
}

CompiledMapping *pin_mapping(const char *collection_id, int length) {
    CompiledMapping *mapping = nullptr;
    run_cpp([&] {
        mapping = mapping_for(std::string(collection_id, length));
        mapping->pins++;
    });
    return mapping;
}

void unpin_mapping(CompiledMapping *mapping) {
    if (mapping && mapping->pins > 0)
        mapping->pins--;
}

} // namespace sequin
