// Reading a sequin.mappings row: see mapping_row.hpp.
#include "mapping/mapping_row.hpp"
#include "pg/error_boundary.hpp"
#include "pg/kept_plan.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
}

namespace sequin {

namespace {

// text[] datum -> vector (guarded: detoasting and deconstruction can raise).
std::vector<std::string> text_array(Datum array) {
    int count = 0;
    char **items = pg_guard([&] {
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
            throw PgError(ERRCODE_NULL_VALUE_NOT_ALLOWED,
                          "column lists in sequin.mappings must not contain NULL");
        result.emplace_back(items[i]);
    }
    return result;
}

} // namespace

MappingRow mapping_row_of(HeapTuple tuple, TupleDesc desc) {
    MappingRow row;
    auto field = [&](const char *name, bool *isnull) {
        return pg_guard([&] {
            int attnum = SPI_fnumber(desc, name);
            if (attnum <= 0)
                elog(ERROR, "sequin.mappings has no column %s", name);
            return SPI_getbinval(tuple, desc, attnum, isnull);
        });
    };
    auto text_of = [](Datum value) -> std::string {
        return pg_guard([&] { return TextDatumGetCString(value); });
    };
    bool isnull;
    Datum value = field("collection_id", &isnull);
    if (isnull)
        throw PgError(ERRCODE_NOT_NULL_VIOLATION, "collection_id must not be null");
    row.collection_id = text_of(value);
    value = field("target_table", &isnull);
    if (isnull)
        throw PgError(ERRCODE_NOT_NULL_VIOLATION,
                      "mapping \"" + row.collection_id + "\": target_table must not be null");
    row.target_table = DatumGetObjectId(value);
    value = field("columns", &isnull);
    if (isnull)
        throw PgError(ERRCODE_NOT_NULL_VIOLATION,
                      "mapping \"" + row.collection_id + "\": columns must not be null");
    row.columns_json = pg_guard([&] {
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
        row.order_column = text_of(value);
    value = field("on_delete", &isnull);
    if (!isnull)
        row.on_delete = text_of(value);
    value = field("required", &isnull);
    if (!isnull)
        row.required = text_array(value);
    // Columns of 0.5.0: a catalog not updated yet has none (every mapping top-level).
    bool has_child_columns = pg_guard([&] { return SPI_fnumber(desc, "parent") > 0; });
    if (!has_child_columns)
        return row;
    row.catalog_has_children = true;
    value = field("parent", &isnull);
    if (!isnull)
        row.parent = text_of(value);
    value = field("list_source", &isnull);
    if (!isnull)
        row.list_source_json = pg_guard([&] {
            Jsonb *jsonb = DatumGetJsonbP(value);
            return JsonbToCString(nullptr, &jsonb->root, VARSIZE(jsonb));
        });
    value = field("parent_key_columns", &isnull);
    if (!isnull)
        row.parent_key_columns = text_array(value);
    return row;
}

std::vector<std::string> fetch_child_collections(const std::string &collection_id) {
    static SPIPlanPtr plan = nullptr;
    const char *id = collection_id.c_str();
    uint64 rows = pg_guard([&] {
        static const Oid types[1] = {TEXTOID};
        kept_plan(&plan,
                  "SELECT m.collection_id FROM sequin.mappings AS m "
                  "WHERE m.parent OPERATOR(pg_catalog.=) $1 "
                  "ORDER BY m.collection_id COLLATE \"C\"",
                  1, types);
        Datum arg = CStringGetTextDatum(id);
        PlanRun how;
        how.read_only = true;
        return run_kept_plan(plan, "child mapping lookup", &arg, nullptr, how);
    });
    std::vector<std::string> children;
    for (uint64 i = 0; i < rows; i++)
        children.emplace_back(pg_guard([&] {
            bool isnull;
            Datum value = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
            return TextDatumGetCString(value);
        }));
    return children;
}

MappingRow fetch_mapping_row(const std::string &collection_id) {
    static SPIPlanPtr plan = nullptr;
    const char *id = collection_id.c_str();
    bool found = pg_guard([&] {
        static const Oid types[1] = {TEXTOID};
        kept_plan(&plan,
                  "SELECT * FROM sequin.mappings AS m "
                  "WHERE m.collection_id OPERATOR(pg_catalog.=) $1",
                  1, types);
        Datum arg = CStringGetTextDatum(id);
        PlanRun how;
        how.read_only = true;
        how.max_rows = 1;
        return run_kept_plan(plan, "mapping lookup", &arg, nullptr, how) > 0;
    });
    if (!found)
        throw PgError(ERRCODE_UNDEFINED_OBJECT,
                      "unknown collection \"" + collection_id + "\": no row in sequin.mappings", {},
                      "Add a mapping with sequin.create_mapping() or INSERT INTO sequin.mappings.");
    return mapping_row_of(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
}

} // namespace sequin
