// Per-backend cache of compiled mappings with relcache-driven invalidation.
#include "mapping_cache.hpp"
#include "pg_boundary.hpp"

extern "C" {
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
}

#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_map>

namespace sequin {

namespace {

std::unordered_map<std::string, std::unique_ptr<CompiledMapping>> cache;
Oid cached_catalog_oid = InvalidOid; // sequin.mappings when the cache was filled
SPIPlanPtr read_plan = nullptr;
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
        if (relid == InvalidOid || relid == cached_catalog_oid || relid == m.row.target_table)
            m.stale = true;
    }
}

Oid catalog_oid() {
    return pg_guard([] {
        Oid nsp = get_namespace_oid("sequin", true);
        return OidIsValid(nsp) ? get_relname_relid("mappings", nsp) : InvalidOid;
    });
}

std::optional<std::vector<std::string>> names_or_null(const nlohmann::json &value) {
    if (value.is_null())
        return std::nullopt;
    std::vector<std::string> names;
    for (const auto &name : value)
        names.push_back(name.is_string() ? name.get<std::string>() : name.dump());
    return names;
}

} // namespace

MappingRow read_mapping_row(const std::string &collection_id) {
    // The whole row as one JSON text: parsed here with nlohmann, away from server code.
    static const char *sql =
        "SELECT pg_catalog.json_build_array(m.target_table::pg_catalog.oid::pg_catalog.int8, "
        "m.columns, "
        "m.conflict_columns, m.keep_on_conflict, m.order_column, m.on_delete, m.required)"
        "::pg_catalog.text FROM sequin.mappings AS m "
        "WHERE m.collection_id OPERATOR(pg_catalog.=) $1";
    char *text = pg_guard([&]() -> char * {
        if (!read_plan) {
            Oid arg_type = TEXTOID;
            SPIPlanPtr plan = SPI_prepare(sql, 1, &arg_type);
            if (!plan)
                elog(ERROR, "could not prepare the mapping lookup: %s",
                     SPI_result_code_string(SPI_result));
            SPI_keepplan(plan);
            read_plan = plan;
        }
        Datum arg = CStringGetTextDatum(collection_id.c_str());
        int rc = SPI_execute_plan(read_plan, &arg, nullptr, true, 1);
        if (rc != SPI_OK_SELECT)
            elog(ERROR, "mapping lookup failed: %s", SPI_result_code_string(rc));
        if (SPI_processed == 0)
            return nullptr;
        return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
    });
    if (!text)
        throw PgError(ERRCODE_UNDEFINED_OBJECT,
                      "unknown collection \"" + collection_id + "\": no row in sequin.mappings", {},
                      "Add a mapping with sequin.create_mapping() or INSERT INTO sequin.mappings.");
    nlohmann::json fields = nlohmann::json::parse(text);
    MappingRow row;
    row.collection_id = collection_id;
    row.target_table = fields[0].get<Oid>();
    row.columns_json = fields[1].dump();
    row.conflict_columns = names_or_null(fields[2]);
    if (!fields[3].is_null())
        row.keep_on_conflict = *names_or_null(fields[3]);
    if (!fields[4].is_null())
        row.order_column = fields[4].get<std::string>();
    row.on_delete = fields[5].is_null() ? "delete" : fields[5].get<std::string>();
    row.required = names_or_null(fields[6]);
    return row;
}

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
        if (!found->second->stale)
            return found->second.get();
        if (found->second->pins) // in use by an outer call: free it at transaction end
            retired.push_back(std::move(found->second));
        cache.erase(found);
    }
    MappingRow row = read_mapping_row(collection_id);
    std::unique_ptr<CompiledMapping> compiled = compile_mapping(row, false, true);
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

} // namespace sequin

extern "C" sequin::CompiledMapping *sequin_mapping_for(const char *collection_id, int length) {
    sequin::CompiledMapping *mapping = nullptr;
    SEQUIN_ENTRY_BEGIN
    mapping = sequin::mapping_for(std::string(collection_id, length));
    mapping->pins++;
    SEQUIN_ENTRY_END
    return mapping;
}

extern "C" void sequin_mapping_unpin(sequin::CompiledMapping *mapping) {
    if (mapping && mapping->pins > 0)
        mapping->pins--;
}
