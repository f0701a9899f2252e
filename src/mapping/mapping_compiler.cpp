// The mapping compiler: validation of a sequin.mappings row against its target table (SPEC:
// "Writing a mapping ... validates it"), then the statements, built and prepared.
#include "mapping/mapping_compiler.hpp"
#include "mapping/citus_table.hpp"
#include "mapping/mapping_source.hpp"
#include "mapping/statement_builder.hpp"
#include "mapping/target_table.hpp"
#include "pg/error_boundary.hpp"
#include "pg/kept_plan.hpp"

extern "C" {
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_opfamily.h"
#include "utils/syscache.h"
#include "catalog/pg_type.h"
#include "access/nbtree.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"
#include "utils/typcache.h"
}

#include <algorithm>

namespace sequin {

namespace {

[[noreturn]] void fail(int sqlstate, const std::string &message, const std::string &hint = {}) {
    throw PgError(sqlstate, message, {}, hint);
}

// Citus plans a distributed statement only with its parameters' values: a custom plan each
// time, where a local table keeps one generic plan.
void prepare(PreparedStatement &s, bool on_citus) {
    if (s.sql.empty())
        return;
    pg_guard([&] {
        kept_plan(&s.plan, s.sql.c_str(), static_cast<int>(s.arg_types.size()), s.arg_types.data(),
                  on_citus ? CURSOR_OPT_CUSTOM_PLAN : CURSOR_OPT_GENERIC_PLAN);
    });
}

std::string join_names(const std::vector<std::string> &names) {
    std::string joined;
    for (const std::string &name : names)
        joined += (joined.empty() ? "" : ", ") + name;
    return joined;
}

// A Citus target: how its rows are placed. A distributed one must be distributed by a
// conflict column, so that each key lives in one shard.
// Returns what is wrong with it, or "".
std::string resolve_citus(CompiledMapping &m, const TargetTable &table, Oid relid) {
    CitusTable citus = citus_table(relid);
    m.citus = citus.kind;
    if (citus.kind == CitusKind::None && citus.method != '\0')
        return "target " + table.display_name + " is a Citus table distributed by " +
               (citus.method == 'a'   ? "append"
                : citus.method == 'r' ? "range"
                                      : "an unknown method") +
               "; mappings target hash-distributed and reference tables";
    if (citus.kind != CitusKind::None) // planned by Citus as a repartitioned statement
        m.merge_unusable = true;
    if (citus.kind != CitusKind::Distributed)
        return "";
    for (size_t k = 0; k < m.key_columns.size(); k++)
        if (m.columns[m.key_columns[k]].attnum == citus.distribution_column)
            m.distribution_key = static_cast<int>(k);
    if (m.distribution_key >= 0)
        return "";
    std::vector<std::string> names;
    for (int k : m.key_columns)
        names.push_back(m.columns[k].name);
    return "target " + table.display_name +
           " is distributed by a column that is not among its conflict columns (" +
           join_names(names) + ")";
}

// Where key is in keys (sorted by json_key_precedes).
int key_slot_of(const std::vector<PathStep> &keys, const PathStep &key) {
    return static_cast<int>(std::lower_bound(keys.begin(), keys.end(), key, json_key_precedes) -
                            keys.begin());
}

// Sorts a phase's top-level keys (each once) and gives each column the slot of its own.
void assign_phase_slots(std::vector<PathStep> &keys, std::vector<MappedColumn *> &columns) {
    for (MappedColumn *c : columns)
        keys.push_back(c->path_steps[0]);
    std::sort(keys.begin(), keys.end(), json_key_precedes);
    keys.erase(std::unique(keys.begin(), keys.end(),
                           [](const PathStep &a, const PathStep &b) {
                               return !json_key_precedes(a, b) && !json_key_precedes(b, a);
                           }),
               keys.end());
    for (MappedColumn *c : columns)
        c->key_slot = key_slot_of(keys, c->path_steps[0]);
}

Oid target_collation(const TargetTable &table, AttrNumber attnum) {
    for (const TargetColumn &column : table.columns)
        if (column.attnum == attnum)
            return column.collation;
    return InvalidOid;
}

// What makes two keys equal: the backing unique index's operator family and collation,
// per key column, with a hash that agrees (none: every key hashes alike, which is slower
// but right).
void resolve_key_equality(CompiledMapping &compiled, const TargetTable &table,
                          const TargetIndex &index) {
    MemoryContext context = compiled.context;
    compiled.key_index = index.oid;
    compiled.key_equality.reserve(compiled.key_columns.size());
    for (int k : compiled.key_columns) {
        size_t at = std::find(index.keys.begin(), index.keys.end(), compiled.columns[k].attnum) -
                    index.keys.begin();
        Oid opfamily = index.opfamilies[at], input_type = index.opcintypes[at];
        KeyEquality equality;
        equality.collation = index.collations[at];
        equality.index_column = static_cast<AttrNumber>(at + 1);
        pg_guard([&] {
            Oid compare = get_opfamily_proc(opfamily, input_type, input_type, BTORDER_PROC);
            if (!OidIsValid(compare))
                elog(ERROR, "operator family %u has no comparison for type %u", opfamily,
                     input_type);
            fmgr_info_cxt(compare, &equality.compare, context);
            Oid equals =
                get_opfamily_member(opfamily, input_type, input_type, BTEqualStrategyNumber);
            equality.equality_operator = equals;
            equality.equality_proc = OidIsValid(equals) ? get_opcode(equals) : InvalidOid;
            RegProcedure left_hash = InvalidOid, right_hash = InvalidOid;
            if (OidIsValid(equals) && get_op_hash_functions(equals, &left_hash, &right_hash) &&
                left_hash == right_hash)
                fmgr_info_cxt(left_hash, &equality.hash, context);
            else
                equality.hash.fn_oid = InvalidOid;
        });
        compiled.key_equality.push_back(equality);
        char *meaning = pg_guard([&] {
            HeapTuple tuple = SearchSysCache1(OPFAMILYOID, ObjectIdGetDatum(opfamily));
            if (!HeapTupleIsValid(tuple))
                elog(ERROR, "cache lookup failed for operator family %u", opfamily);
            Form_pg_opfamily form = (Form_pg_opfamily)GETSTRUCT(tuple);
            char *family = quote_qualified_identifier(get_namespace_name(form->opfnamespace),
                                                      NameStr(form->opfname));
            ReleaseSysCache(tuple);
            char *collation_name = nullptr;
            if (OidIsValid(equality.collation)) {
                HeapTuple coll = SearchSysCache1(COLLOID, ObjectIdGetDatum(equality.collation));
                if (HeapTupleIsValid(coll)) {
                    Form_pg_collation c = (Form_pg_collation)GETSTRUCT(coll);
                    collation_name = quote_qualified_identifier(
                        get_namespace_name(c->collnamespace), NameStr(c->collname));
                    ReleaseSysCache(coll);
                }
            }
            return psprintf("%s %s %s%s%s", quote_identifier(compiled.columns[k].name.c_str()),
                            format_type_be(compiled.columns[k].type->base_oid), family,
                            collation_name ? " COLLATE " : "",
                            collation_name ? collation_name : "");
        });
        compiled.key_signature +=
            (compiled.key_signature.empty() ? "" : ", ") + std::string(meaning);
        // The statements compare with the index's collation where the column has another.
        std::string collate;
        Oid column_collation = target_collation(table, compiled.columns[k].attnum);
        if (OidIsValid(equality.collation) && equality.collation != column_collation) {
            Oid collation = equality.collation;
            collate = pg_guard([&] {
                HeapTuple coll = SearchSysCache1(COLLOID, ObjectIdGetDatum(collation));
                if (!HeapTupleIsValid(coll))
                    elog(ERROR, "cache lookup failed for collation %u", collation);
                Form_pg_collation c = (Form_pg_collation)GETSTRUCT(coll);
                char *name = psprintf(
                    " COLLATE %s", quote_qualified_identifier(get_namespace_name(c->collnamespace),
                                                              NameStr(c->collname)));
                ReleaseSysCache(coll);
                return name;
            });
        }
        compiled.key_collate_sql.push_back(collate);
    }
}

// A key or order column's tombstone text: its base type's output and input functions.
TombstoneColumn tombstone_column(const ValueType &type) {
    TombstoneColumn column;
    column.base_type = type.base_oid;
    column.base_typmod = type.base_typmod;
    column.input_ioparam = type.input_ioparam;
    pg_guard([&] {
        Oid output;
        bool varlena;
        getTypeOutputInfo(type.base_oid, &output, &varlena);
        fmgr_info_cxt(output, &column.output, type.context);
        fmgr_info_copy(&column.input, const_cast<FmgrInfo *>(&type.input_fn), type.context);
    });
    return column;
}

void assign_key_slots(CompiledMapping &m) {
    static const char deleted[] = "deleted";
    std::vector<MappedColumn *> identity, values;
    for (MappedColumn &c : m.columns)
        if (c.kind == SourceKind::Path) // the others are not read from the record's own keys
            (c.is_key || c.is_order ? identity : values).push_back(&c);
    const PathStep deleted_step{deleted, static_cast<int>(sizeof deleted - 1), -1};
    m.identity_keys.push_back(deleted_step);
    assign_phase_slots(m.identity_keys, identity);
    m.deleted_slot = key_slot_of(m.identity_keys, deleted_step);
    assign_phase_slots(m.value_keys, values);
}

} // namespace

CompiledMapping::~CompiledMapping() {
    // Only freeing: neither call raises.
    for (PreparedStatement *s : statements())
        free_kept_plan(&s->plan);
    if (context)
        MemoryContextDelete(context);
}

namespace {

// The JSON parser reads UTF-8; the catalog's text, the targets' column names and the
// records' keys are in the server encoding (say LATIN1): converted both ways.
bool server_is_utf8() {
    int encoding = GetDatabaseEncoding();
    return encoding == PG_UTF8 || encoding == PG_SQL_ASCII;
}

std::string convert_text(const std::string &text, bool to_utf8) {
    if (server_is_utf8())
        return text;
    const char *converted = pg_guard([&] {
        return to_utf8 ? pg_server_to_any(text.c_str(), static_cast<int>(text.size()), PG_UTF8)
                       : pg_any_to_server(text.c_str(), static_cast<int>(text.size()), PG_UTF8);
    });
    return std::string(converted);
}

std::vector<std::pair<std::string, Source>>
parse_columns_in_server_encoding(const std::string &json) {
    auto parsed = parse_columns(convert_text(json, true));
    for (auto &[name, source] : parsed) {
        name = convert_text(name, false);
        for (std::string &key : source.keys)
            key = convert_text(key, false);
    }
    return parsed;
}

// While a parent mapping's new row is validated, its children are checked against it, not
// against the row still in the catalog (check_child_mappings).
const MappingRow *parent_being_written = nullptr;

MappingRow parent_row_of(const MappingRow &row) {
    if (parent_being_written && parent_being_written->collection_id == *row.parent)
        return *parent_being_written;
    return fetch_mapping_row(*row.parent);
}

// The parents above row, nearest first, up to a cycle or too deep a nesting.
void check_parent_chain(const MappingRow &row) {
    std::string at = *row.parent;
    for (int depth = 1;; depth++) {
        if (at == row.collection_id)
            fail(ERRCODE_INVALID_PARAMETER_VALUE,
                 "mapping \"" + row.collection_id + "\": parent \"" + *row.parent +
                     "\" is, or descends from, this mapping itself");
        if (depth > 32)
            fail(ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                 "mapping \"" + row.collection_id + "\": child mappings nest at most 32 deep");
        MappingRow above = fetch_mapping_row(at);
        if (!above.parent)
            return;
        at = *above.parent;
    }
}

// A child mapping: its list, and the columns holding its parent's key, checked against the
// parent's mapping. A top-level mapping: none of that is set.
void resolve_child(CompiledMapping &m, bool deferred_checks, bool resolve_parent) {
    const MappingRow &row = m.row;
    auto mapping_error = [&](int sqlstate, const std::string &what) {
        fail(sqlstate, "mapping \"" + row.collection_id + "\": " + what);
    };
    if (!row.parent) {
        if (row.list_source_json || row.parent_key_columns)
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                          "list_source and parent_key_columns are set only with parent");
        return;
    }
    m.is_child = true;
    if (!row.list_source_json)
        mapping_error(ERRCODE_NOT_NULL_VIOLATION,
                      "a child mapping needs list_source: where the list sits in the parent's "
                      "record, e.g. \"data.items.data\"");
    if (!row.parent_key_columns || row.parent_key_columns->empty())
        mapping_error(ERRCODE_NOT_NULL_VIOLATION,
                      "a child mapping needs parent_key_columns: the columns that hold the "
                      "parent's key, each mapped from \"$parent.<source of the parent's key>\"");
    if (row.order_column)
        mapping_error(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "a child mapping has no order_column: its rows follow their parent's version");
    if (row.on_delete != "delete")
        mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                      "a child mapping has no on_delete of its own: its rows go with their parent");
    Source list;
    try {
        list = parse_list_source(convert_text(*row.list_source_json, true));
    } catch (const SourceError &e) {
        mapping_error(ERRCODE_INVALID_PARAMETER_VALUE, convert_text(e.what(), false));
    }
    for (std::string &key : list.keys)
        key = convert_text(key, false);
    std::vector<std::string> enclosing(list.keys.begin(), list.keys.end() - 1);
    std::vector<int> enclosing_indexes(list.array_indexes.begin(), list.array_indexes.end() - 1);
    enclosing.push_back("has_more");
    enclosing_indexes.push_back(-1);
    m.list_path.set(list.keys, list.array_indexes);
    m.has_more_path.set(enclosing, enclosing_indexes);

    std::vector<std::string> seen;
    for (const std::string &name : *row.parent_key_columns) {
        auto found = std::find_if(m.columns.begin(), m.columns.end(),
                                  [&](const MappedColumn &c) { return c.name == name; });
        if (found == m.columns.end())
            mapping_error(ERRCODE_UNDEFINED_COLUMN, "parent_key_columns names column \"" + name +
                                                        "\", which is not a mapped column");
        if (std::find(seen.begin(), seen.end(), name) != seen.end())
            mapping_error(ERRCODE_DUPLICATE_COLUMN,
                          "parent_key_columns names \"" + name + "\" twice");
        seen.push_back(name);
        m.parent_key_columns.push_back(static_cast<int>(found - m.columns.begin()));
    }
    if (deferred_checks || !resolve_parent) // a restore may load the parent's row later
        return;
    check_parent_chain(row);
    std::unique_ptr<CompiledMapping> parent =
        compile_mapping(parent_row_of(row), false, false, false);
    m.parent_target = parent->row.target_table;
    if (parent->is_child && !parent->key_from_element)
        mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                      "parent \"" + *row.parent +
                          "\" is a child whose conflict columns are not all read from its list "
                          "element: a child can be a parent only when its own key is read from "
                          "its element");
    if (m.parent_key_columns.size() != parent->key_columns.size())
        mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                      "parent_key_columns has " + std::to_string(m.parent_key_columns.size()) +
                          " columns; the key of parent \"" + *row.parent + "\" has " +
                          std::to_string(parent->key_columns.size()));
    for (size_t k = 0; k < m.parent_key_columns.size(); k++) {
        const MappedColumn &column = m.columns[m.parent_key_columns[k]];
        const MappedColumn &key = parent->columns[parent->key_columns[k]];
        std::string wanted;
        for (const std::string &part : key.path_keys)
            wanted += (wanted.empty() ? "" : ".") + part;
        if (column.kind != SourceKind::ParentPath || column.path_keys != key.path_keys)
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                          "parent key column \"" + column.name +
                              "\" must be mapped from \"$parent." + wanted +
                              "\" (the source of conflict column \"" + key.name +
                              "\" of parent \"" + *row.parent + "\")");
        if (column.type->type_oid != key.type->type_oid)
            mapping_error(ERRCODE_DATATYPE_MISMATCH,
                          "parent key column \"" + column.name + "\" is of type " +
                              type_display(column.type->type_oid, -1) + "; conflict column \"" +
                              key.name + "\" of parent \"" + *row.parent + "\" is of type " +
                              type_display(key.type->type_oid, -1) + ": they must be the same");
        // The rows of a parent are found by its key under the parent's unique index: the child
        // column must tell keys apart as that index does (a case-insensitive key, say).
        Oid child_collation = pg_guard([&] {
            Oid type, collation;
            int32 typmod;
            get_atttypetypmodcoll(row.target_table, column.attnum, &type, &typmod, &collation);
            return collation;
        });
        Oid parent_collation =
            k < parent->key_equality.size() ? parent->key_equality[k].collation : InvalidOid;
        if (OidIsValid(parent_collation) && parent_collation != child_collation)
            mapping_error(ERRCODE_COLLATION_MISMATCH,
                          "parent key column \"" + column.name +
                              "\" does not have the collation that the unique index of parent \"" +
                              *row.parent + "\" compares conflict column \"" + key.name +
                              "\" with (" +
                              pg_guard([&] { return get_collation_name(parent_collation); }) +
                              "): give it that collation");
    }
}

} // namespace

void check_child_mappings(const MappingRow &row) {
    if (!row.catalog_has_children)
        return;
    struct Restore {
        ~Restore() { parent_being_written = nullptr; }
    } restore;
    parent_being_written = &row;
    for (const std::string &child : fetch_child_collections(row.collection_id)) {
        try {
            compile_mapping(fetch_mapping_row(child), false, false, true);
        } catch (const PgError &e) {
            throw PgError(e.sqlstate(), "mapping \"" + row.collection_id +
                                            "\" cannot change so: its child mapping says " +
                                            e.what());
        }
    }
}

void StoredPath::set(std::vector<std::string> new_keys, const std::vector<int> &array_indexes) {
    keys = std::move(new_keys);
    steps.clear();
    for (size_t k = 0; k < keys.size(); k++)
        steps.push_back({keys[k].c_str(), static_cast<int>(keys[k].size()), array_indexes[k]});
    path = {static_cast<int>(steps.size()), steps.data()};
}

std::unique_ptr<CompiledMapping> compile_mapping(const MappingRow &row, bool deferred_checks,
                                                 bool prepare_statements, bool resolve_parent) {
    auto compiled = std::make_unique<CompiledMapping>();
    compiled->row = row;
    const std::string &collection = row.collection_id;
    auto mapping_error = [&](int sqlstate, const std::string &what) {
        fail(sqlstate, "mapping \"" + collection + "\": " + what);
    };

    if (row.on_delete == "delete")
        compiled->on_delete = OnDelete::Delete;
    else if (row.on_delete == "upsert")
        compiled->on_delete = OnDelete::Upsert;
    else if (row.on_delete == "ignore")
        compiled->on_delete = OnDelete::Ignore;
    else
        mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                      "on_delete must be 'delete', 'upsert' or 'ignore', not '" + row.on_delete +
                          "'");

    TargetTable table = describe_target(row.target_table);
    compiled->target_name = table.qualified_name;
    compiled->partitioned = table.relkind == RELKIND_PARTITIONED_TABLE;
    if (table.relkind != RELKIND_RELATION && table.relkind != RELKIND_PARTITIONED_TABLE)
        mapping_error(ERRCODE_WRONG_OBJECT_TYPE,
                      "target " + table.display_name + " is not a table");
    // The parent's unique index does not reach into its children: a key could be stored twice.
    if (table.has_inheritance_children)
        mapping_error(ERRCODE_WRONG_OBJECT_TYPE,
                      "target " + table.display_name +
                          " has inheritance children, which its unique key does not cover; map "
                          "each table, or use a partitioned table");
    // Another session cannot see it, and the mapping would dangle after this one ends.
    if (table.relpersistence == RELPERSISTENCE_TEMP)
        mapping_error(ERRCODE_WRONG_OBJECT_TYPE, "target " + table.display_name +
                                                     " is a temporary table; mappings target "
                                                     "permanent (or unlogged) tables only");

    std::vector<std::pair<std::string, Source>> sources;
    try {
        sources = parse_columns_in_server_encoding(row.columns_json);
    } catch (const SourceError &e) {
        mapping_error(ERRCODE_INVALID_PARAMETER_VALUE, convert_text(e.what(), false));
    }

    compiled->context = pg_guard([&] {
        return AllocSetContextCreate(CacheMemoryContext, "sequin mapping", ALLOCSET_SMALL_SIZES);
    });
    compiled->columns.reserve(sources.size()); // path_steps point into path_keys: no reallocation
    for (auto &[name, source] : sources) {
        auto target = std::find_if(table.columns.begin(), table.columns.end(),
                                   [&](const TargetColumn &c) { return c.name == name; });
        if (target == table.columns.end())
            mapping_error(ERRCODE_UNDEFINED_COLUMN,
                          "column \"" + name + "\" does not exist in " + table.display_name);
        if (target->generated || target->identity_always)
            mapping_error(ERRCODE_GENERATED_ALWAYS, "column \"" + name + "\" of " +
                                                        table.display_name +
                                                        " is generated and cannot be written");
        compiled->columns.emplace_back();
        MappedColumn &column = compiled->columns.back();
        column.name = name;
        column.attnum = target->attnum;
        column.is_now = source.is_now;
        column.kind = source.kind;
        if (!row.parent && (source.kind == SourceKind::ParentPath ||
                            source.kind == SourceKind::Index || source.kind == SourceKind::Element))
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                          "source of column \"" + name +
                              "\": \"$parent.<path>\", \"$index\" and \"$element\" are sources of "
                              "a child mapping (one with a parent)");
        column.path_keys = std::move(source.keys);
        for (size_t k = 0; k < column.path_keys.size(); k++)
            column.path_steps.push_back({column.path_keys[k].c_str(),
                                         static_cast<int>(column.path_keys[k].size()),
                                         source.array_indexes[k]});
        column.path = {static_cast<int>(column.path_steps.size()), column.path_steps.data()};
        column.type = pg_guard([&] {
            auto *vt =
                static_cast<ValueType *>(MemoryContextAlloc(compiled->context, sizeof(ValueType)));
            value_type_init(vt, target->type_oid, target->typmod, compiled->context);
            return vt;
        });
        // unnest() would spread a composite over several columns: those travel as text too.
        column.param_as_text =
            column.type->kind == ConvKind::Array ||
            pg_guard([&] { return type_is_rowtype(target->type_oid); }) ||
            !OidIsValid(pg_guard([&] { return get_array_type(target->type_oid); }));
        if (column.is_now && column.type->base_oid != TIMESTAMPOID &&
            column.type->base_oid != TIMESTAMPTZOID && column.type->base_oid != DATEOID)
            mapping_error(ERRCODE_DATATYPE_MISMATCH,
                          "\"$now\" cannot fill column \"" + name + "\" of type " +
                              type_display(target->type_oid, target->typmod) +
                              " (it needs timestamp, timestamptz or date)");
    }
    auto find_mapped = [&](const std::string &name, const char *setting) -> int {
        for (size_t i = 0; i < compiled->columns.size(); i++)
            if (compiled->columns[i].name == name)
                return static_cast<int>(i);
        mapping_error(ERRCODE_UNDEFINED_COLUMN, std::string(setting) + " names column \"" + name +
                                                    "\", which is not a mapped column");
        return -1;
    };

    // The conflict key: given, or the primary key.
    std::vector<std::string> key_names;
    if (row.conflict_columns) {
        key_names = *row.conflict_columns;
        if (key_names.empty())
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE, "conflict_columns must not be empty");
    } else {
        for (const TargetIndex &index : table.unique_indexes)
            if (index.primary)
                for (AttrNumber attnum : index.keys)
                    for (const TargetColumn &c : table.columns)
                        if (c.attnum == attnum)
                            key_names.push_back(c.name);
        if (key_names.empty() && !deferred_checks)
            mapping_error(ERRCODE_INVALID_COLUMN_REFERENCE,
                          table.display_name +
                              " has no primary key: set conflict_columns to the columns of a "
                              "unique index");
    }
    std::vector<AttrNumber> key_attnums;
    for (const std::string &name : key_names) {
        int index = find_mapped(name, "conflict_columns");
        if (compiled->columns[index].is_now)
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                          "conflict column \"" + name + "\" cannot come from \"$now\"");
        if (std::find(compiled->key_columns.begin(), compiled->key_columns.end(), index) !=
            compiled->key_columns.end())
            mapping_error(ERRCODE_DUPLICATE_COLUMN,
                          "conflict_columns names \"" + name + "\" twice");
        compiled->key_columns.push_back(index);
        compiled->columns[index].is_key = true;
        key_attnums.push_back(compiled->columns[index].attnum);
    }
    if (!deferred_checks && !key_attnums.empty()) {
        std::vector<AttrNumber> wanted = key_attnums;
        std::sort(wanted.begin(), wanted.end());
        auto covers_key = [&](const TargetIndex &index) {
            std::vector<AttrNumber> keys = index.keys;
            std::sort(keys.begin(), keys.end());
            return keys == wanted;
        };
        auto backing = std::find_if(
            table.unique_indexes.begin(), table.unique_indexes.end(),
            [&](const TargetIndex &index) { return !index.deferrable && covers_key(index); });
        if (backing == table.unique_indexes.end())
            mapping_error(ERRCODE_INVALID_COLUMN_REFERENCE,
                          "conflict_columns (" + join_names(key_names) +
                              ") are not backed by a unique index or constraint of " +
                              table.display_name);
        // ON CONFLICT takes every unique index on those columns as an arbiter.
        for (const TargetIndex &index : table.unique_indexes)
            if (index.deferrable && covers_key(index))
                mapping_error(ERRCODE_FEATURE_NOT_SUPPORTED,
                              "conflict_columns (" + join_names(key_names) + ") of " +
                                  table.display_name +
                                  " are covered by a deferrable unique constraint, which "
                                  "INSERT ... ON CONFLICT cannot use");
        resolve_key_equality(*compiled, table, *backing);
    }
    for (int k : compiled->key_columns)
        operator_sql(compiled->columns[k].type->type_oid, TYPECACHE_EQ_OPR,
                     compiled->columns[k].name, "equality");

    std::string citus_problem = resolve_citus(*compiled, table, row.target_table);
    if (!citus_problem.empty())
        mapping_error(ERRCODE_FEATURE_NOT_SUPPORTED, citus_problem);

    for (const std::string &name : row.keep_on_conflict) {
        int index = find_mapped(name, "keep_on_conflict");
        compiled->columns[index].keep_on_conflict = true;
    }

    if (row.order_column) {
        int index = find_mapped(*row.order_column, "order_column");
        MappedColumn &column = compiled->columns[index];
        if (column.is_now)
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                          "order_column \"" + column.name + "\" cannot come from \"$now\"");
        if (column.is_key)
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                          "order_column \"" + column.name + "\" cannot be a conflict column");
        operator_sql(column.type->type_oid, TYPECACHE_LT_OPR, column.name, "ordering");
        column.is_order = true;
        compiled->order_column = index;
        Oid type_oid = column.type->type_oid;
        Oid order_collation = target_collation(table, column.attnum);
        pg_guard([&] {
            TypeCacheEntry *entry = lookup_type_cache(type_oid, TYPECACHE_CMP_PROC_FINFO);
            if (!OidIsValid(entry->cmp_proc_finfo.fn_oid))
                ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
                                errmsg("order_column type %s has no comparison function",
                                       format_type_be(type_oid))));
            fmgr_info_copy(&compiled->order_compare, &entry->cmp_proc_finfo, compiled->context);
            // The column's collation, as the statements' version guard compares with it.
            compiled->order_collation =
                OidIsValid(order_collation) ? order_collation : get_typcollation(type_oid);
        });
    }

    if (compiled->order_column >= 0 && !compiled->key_equality.empty()) {
        for (int k : compiled->key_columns)
            compiled->tombstone_key.push_back(tombstone_column(*compiled->columns[k].type));
        compiled->tombstone_version =
            tombstone_column(*compiled->columns[compiled->order_column].type);
    }

    if (row.required) {
        for (const std::string &name : *row.required) {
            int index = find_mapped(name, "required");
            if (compiled->columns[index].is_now)
                mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                              "required column \"" + name + "\" comes from \"$now\"");
            compiled->columns[index].required = true;
        }
    } else {
        for (MappedColumn &c : compiled->columns)
            c.required = c.is_key || c.is_order;
    }

    resolve_child(*compiled, deferred_checks, resolve_parent);
    for (int k : compiled->key_columns)
        if (compiled->columns[k].kind != SourceKind::Path)
            compiled->key_from_element = false;
    if (row.catalog_has_children)
        compiled->children = fetch_child_collections(collection);
    if (!compiled->children.empty() && compiled->is_child && !compiled->key_from_element)
        mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                      "is the parent of \"" + compiled->children[0] +
                          "\", so its conflict columns must be read from its list element: a "
                          "child can be a parent only when its own key is read from its element");

    assign_key_slots(*compiled);
    if (!compiled->key_columns.empty()) {
        build_statements(*compiled);
        if (prepare_statements)
            for (PreparedStatement *s : compiled->statements())
                if (s != &compiled->tomb_insert && s != &compiled->merge_write &&
                    s != &compiled->merge_upserts) // at their first use (apply/)
                    prepare(*s, compiled->citus != CitusKind::None);
    }
    return compiled;
}

} // namespace sequin
