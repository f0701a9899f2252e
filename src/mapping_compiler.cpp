// The mapping compiler: validation of a sequin.mappings row against its target table, and
// generation of the set-based statements the applier runs for it.
#include "mapping_compiler.hpp"
#include "mapping_source.hpp"
#include "pg_boundary.hpp"

extern "C" {
#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
}

#include <algorithm>
#include <set>

namespace sequin {

namespace {

// What the compiler needs to know of the target table, copied out of the relcache.
struct TargetColumn {
    std::string name;
    AttrNumber attnum;
    Oid type_oid;
    int32 typmod;
    bool generated;
    bool identity_always;
};

struct TargetIndex {
    bool primary;
    bool deferrable;
    std::vector<AttrNumber> keys; // empty when the index cannot arbitrate ON CONFLICT
};

struct TargetTable {
    std::string qualified_name; // quoted
    std::string display_name;
    char relkind;
    std::vector<TargetColumn> columns;
    std::vector<TargetIndex> unique_indexes;
};

[[noreturn]] void fail(int sqlstate, const std::string &message, const std::string &hint = {}) {
    throw PgError(sqlstate, message, {}, hint);
}

std::string quote_ident(const std::string &name) {
    return quote_identifier(name.c_str());
}

// Reads the target table's columns and unique indexes. Server calls, guarded.
TargetTable describe_target(Oid relid) {
    TargetTable table;
    struct RawColumn {
        NameData name;
        AttrNumber attnum;
        Oid type_oid;
        int32 typmod;
        bool generated, identity_always;
    };
    struct RawIndex {
        bool primary, usable, deferrable;
        int nkeys;
        AttrNumber keys[INDEX_MAX_KEYS];
    };
    // Raw copies first (no C++ objects while server code may longjmp), then C++ data.
    int ncolumns = 0, nindexes = 0;
    RawColumn *raw_columns = nullptr;
    RawIndex *raw_indexes = nullptr;
    char *qualified = nullptr, *display = nullptr;
    char relkind = 0;
    pg_guard([&] {
        Relation rel = try_relation_open(relid, AccessShareLock);
        if (!rel)
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                            errmsg("target table with OID %u does not exist", relid)));
        relkind = rel->rd_rel->relkind;
        const char *nspname = get_namespace_name(RelationGetNamespace(rel));
        qualified = quote_qualified_identifier(nspname, RelationGetRelationName(rel));
        display = qualified;
        TupleDesc desc = RelationGetDescr(rel);
        raw_columns = static_cast<RawColumn *>(palloc0(sizeof(RawColumn) * (desc->natts + 1)));
        for (int i = 0; i < desc->natts; i++) {
            Form_pg_attribute att = TupleDescAttr(desc, i);
            if (att->attisdropped)
                continue;
            RawColumn &c = raw_columns[ncolumns++];
            c.name = att->attname;
            c.attnum = att->attnum;
            c.type_oid = att->atttypid;
            c.typmod = att->atttypmod;
            c.generated = att->attgenerated != '\0';
            c.identity_always = att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;
        }
        List *index_oids = RelationGetIndexList(rel);
        raw_indexes =
            static_cast<RawIndex *>(palloc0(sizeof(RawIndex) * (list_length(index_oids) + 1)));
        ListCell *cell;
        foreach (cell, index_oids) {
            HeapTuple tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(cell)));
            if (!HeapTupleIsValid(tuple))
                continue;
            Form_pg_index index = (Form_pg_index)GETSTRUCT(tuple);
            if (index->indisunique) {
                RawIndex &r = raw_indexes[nindexes++];
                r.primary = index->indisprimary;
                r.deferrable = !index->indimmediate;
                r.usable = index->indisvalid &&
                           heap_attisnull(tuple, Anum_pg_index_indexprs, nullptr) &&
                           heap_attisnull(tuple, Anum_pg_index_indpred, nullptr);
                r.nkeys = index->indnkeyatts;
                for (int k = 0; k < r.nkeys; k++)
                    r.keys[k] = index->indkey.values[k];
            }
            ReleaseSysCache(tuple);
        }
        relation_close(rel, AccessShareLock);
    });
    table.qualified_name = qualified;
    table.display_name = display;
    table.relkind = relkind;
    for (int i = 0; i < ncolumns; i++) {
        const RawColumn &c = raw_columns[i];
        table.columns.push_back(
            {NameStr(c.name), c.attnum, c.type_oid, c.typmod, c.generated, c.identity_always});
    }
    for (int i = 0; i < nindexes; i++) {
        const RawIndex &r = raw_indexes[i];
        TargetIndex index{r.primary, r.deferrable, {}};
        if (r.usable)
            index.keys.assign(r.keys, r.keys + r.nkeys);
        table.unique_indexes.push_back(index);
    }
    return table;
}

std::string type_sql(Oid type_oid) {
    return pg_guard([&] { return format_type_extended(type_oid, -1, FORMAT_TYPE_FORCE_QUALIFY); });
}

std::string type_display(Oid type_oid, int32 typmod) {
    return pg_guard([&] { return format_type_with_typemod(type_oid, typmod); });
}

// OPERATOR(schema.op) for a type's default btree operator (equality or less-than).
std::string operator_sql(Oid type_oid, int which, const std::string &column, const char *what) {
    char *text = pg_guard([&]() -> char * {
        TypeCacheEntry *entry = lookup_type_cache(type_oid, which);
        Oid opr = which == TYPECACHE_EQ_OPR ? entry->eq_opr : entry->lt_opr;
        if (!OidIsValid(opr))
            return nullptr;
        HeapTuple tuple = SearchSysCache1(OPEROID, ObjectIdGetDatum(opr));
        Form_pg_operator form = (Form_pg_operator)GETSTRUCT(tuple);
        char *result =
            psprintf("OPERATOR(%s.%s)", quote_identifier(get_namespace_name(form->oprnamespace)),
                     NameStr(form->oprname));
        ReleaseSysCache(tuple);
        return result;
    });
    if (!text)
        fail(ERRCODE_UNDEFINED_FUNCTION, "column \"" + column + "\" has type " +
                                             type_display(type_oid, -1) + ", which has no " + what +
                                             " operator");
    return text;
}

// The rest of compile_mapping: the SQL text of each statement.
class StatementBuilder {
  public:
    StatementBuilder(CompiledMapping &m) : m_(m) {}

    void build() {
        build_row_writes();
        build_lookup();
        build_remove();
        if (m_.order_column >= 0) {
            build_tomb_any();
            build_tomb_lookup();
            build_tomb_upsert();
        }
    }

  private:
    CompiledMapping &m_;

    const MappedColumn &order() const { return m_.columns[m_.order_column]; }

    static std::string param_type_desc(const MappedColumn &c) {
        return c.param_as_text ? "text[]" : type_sql(c.type->type_oid) + "[]";
    }

    // The value of column c read from alias (cast back when it travels as text).
    std::string typed(const MappedColumn &c, const std::string &alias) const {
        return c.param_as_text ? "(" + alias + ")::" + type_sql(c.type->type_oid) : alias;
    }

    static void add_param(PreparedStatement &s, Oid type, const std::string &desc) {
        s.arg_types.push_back(type);
        s.arg_descriptions.push_back(desc);
    }

    void add_column_param(PreparedStatement &s, const MappedColumn &c) {
        Oid array_type = c.param_as_text
                             ? TEXTARRAYOID
                             : pg_guard([&] { return get_array_type(c.type->type_oid); });
        add_param(s, array_type, c.name + " " + param_type_desc(c));
    }

    std::string order_guard(const std::string &stored, const std::string &incoming) const {
        const MappedColumn &o = order();
        std::string lt = operator_sql(o.type->type_oid, TYPECACHE_LT_OPR, o.name, "ordering");
        return "(" + stored + " IS NULL OR " + stored + " " + lt + " " + incoming + ")";
    }

    // row.key = incoming for every key column; alias(k, column) names the incoming value.
    template <typename Alias>
    std::string key_match_by(const std::string &row, Alias &&alias) const {
        std::string sql;
        for (size_t k = 0; k < m_.key_columns.size(); k++) {
            const MappedColumn &c = m_.columns[m_.key_columns[k]];
            if (k)
                sql += " AND ";
            sql += row + "." + quote_ident(c.name) + " " +
                   operator_sql(c.type->type_oid, TYPECACHE_EQ_OPR, c.name, "equality") + " " +
                   typed(c, alias(k, c));
        }
        return sql;
    }

    // The same, with the incoming key columns named prefix1, prefix2, ... (key_unnest).
    std::string key_match(const std::string &row, const std::string &alias_prefix) const {
        return key_match_by(row, [&](size_t k, const MappedColumn &) {
            return alias_prefix + std::to_string(k + 1);
        });
    }

    // unnest($first .. ) AS u(names): one array parameter per key column (+ order column).
    std::string key_unnest(PreparedStatement &s, bool with_index, bool with_order,
                           std::string &aliases) {
        std::string params;
        aliases.clear();
        if (with_index) {
            add_param(s, INT4ARRAYOID, "record number integer[]");
            params = "$1";
            aliases = "i";
        }
        for (size_t k = 0; k < m_.key_columns.size(); k++) {
            add_column_param(s, m_.columns[m_.key_columns[k]]);
            params += (params.empty() ? "$" : ", $") + std::to_string(s.arg_types.size());
            aliases += (aliases.empty() ? "k" : ", k") + std::to_string(k + 1);
        }
        if (with_order) {
            add_column_param(s, order());
            params += ", $" + std::to_string(s.arg_types.size());
            aliases += ", v";
        }
        return batch_rows(params, aliases);
    }

    // The batch as rows u(aliases): the parameter arrays side by side. unnest() in the
    // select list runs them in step, in array order, without the tuplestore per function
    // that ROWS FROM (unnest(..), ..) fills first.
    static std::string batch_rows(const std::string &params, const std::string &aliases) {
        std::string sql = "(SELECT ";
        size_t p = 0, a = 0;
        while (true) {
            size_t p_end = params.find(", ", p), a_end = aliases.find(", ", a);
            sql += (p ? ", " : "") + std::string("pg_catalog.unnest(") +
                   params.substr(p, p_end - p) + ") AS " + aliases.substr(a, a_end - a);
            if (p_end == std::string::npos || a_end == std::string::npos)
                break;
            p = p_end + 2;
            a = a_end + 2;
        }
        return sql + ") AS u";
    }

    std::string tomb_key() const {
        std::string sql = "ARRAY[";
        for (size_t k = 0; k < m_.key_columns.size(); k++) {
            const MappedColumn &c = m_.columns[m_.key_columns[k]];
            sql +=
                (k ? ", (" : "(") + typed(c, "u.k" + std::to_string(k + 1)) + ")::pg_catalog.text";
        }
        return sql + "]";
    }

    // The writes of full rows share one parameter list: one array per mapped column.
    //   upsert:       INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <stored version older>
    //   insert_new:   INSERT ... ON CONFLICT (key) DO NOTHING   (keys believed new)
    //   insert_plain: INSERT                                     (tried first for new keys)
    //   update_first: UPDATE ... FROM the batch WHERE <key> AND <stored version older>
    //                 RETURNING the record number (one more array, the last parameter)
    void build_row_writes() {
        PreparedStatement &s = m_.upsert;
        std::string insert_cols, select_list, params, aliases, excluded_set, update_set;
        for (MappedColumn &c : m_.columns) {
            std::string value;
            if (c.is_now) {
                Oid base = c.type->base_oid;
                value = base == TIMESTAMPTZOID ? "pg_catalog.now()"
                                               : "pg_catalog.timezone('UTC', pg_catalog.now())";
                value = "(" + value + ")::" + type_sql(c.type->type_oid);
            } else {
                add_column_param(s, c);
                c.param_number = static_cast<int>(s.arg_types.size());
                std::string alias = "a" + std::to_string(c.param_number);
                params += (params.empty() ? "$" : ", $") + std::to_string(c.param_number);
                aliases += (aliases.empty() ? "" : ", ") + alias;
                value = typed(c, "u." + alias);
            }
            std::string col = quote_ident(c.name);
            insert_cols += (insert_cols.empty() ? "" : ", ") + col;
            select_list += (select_list.empty() ? "" : ", ") + value;
            if (!c.is_key && !c.keep_on_conflict) {
                excluded_set += (excluded_set.empty() ? "" : ", ") + col + " = EXCLUDED." + col;
                update_set += (update_set.empty() ? "" : ", ") + col + " = " + value;
            }
        }
        std::string conflict;
        for (int k : m_.key_columns)
            conflict += (conflict.empty() ? "" : ", ") + quote_ident(m_.columns[k].name);
        if (excluded_set.empty()) { // nothing to overwrite: still count the row as updated
            std::string key = quote_ident(m_.columns[m_.key_columns[0]].name);
            excluded_set = key + " = EXCLUDED." + key;
            update_set = key + " = t." + key;
        }
        std::string from = batch_rows(params, aliases);
        std::string plain = "INSERT INTO " + m_.target_name + " AS t (" + insert_cols +
                            ") SELECT " + select_list + " FROM " + from;
        std::string insert = plain + " ON CONFLICT (" + conflict + ") DO ";
        s.sql = insert + "UPDATE SET " + excluded_set;
        std::string guard;
        if (m_.order_column >= 0) {
            std::string col = quote_ident(order().name);
            s.sql += " WHERE " + order_guard("t." + col, "EXCLUDED." + col);
            guard =
                " AND " + order_guard("t." + col,
                                      typed(order(), "u.a" + std::to_string(order().param_number)));
        }

        PreparedStatement &u = m_.update_first;
        u.arg_types = s.arg_types;
        u.arg_descriptions = s.arg_descriptions;
        add_param(u, INT4ARRAYOID, "record number integer[]");
        std::string key_matches = key_match_by("t", [](size_t, const MappedColumn &c) {
            return "u.a" + std::to_string(c.param_number);
        });
        u.sql = "UPDATE " + m_.target_name + " AS t SET " + update_set + " FROM " +
                batch_rows(params + ", $" + std::to_string(u.arg_types.size()), aliases + ", i") +
                " WHERE " + key_matches + guard + " RETURNING u.i";
        u.join_in_batch_order = true;

        if (m_.order_column >= 0) {
            m_.insert_new.sql = insert + "NOTHING";
            m_.insert_new.arg_types = s.arg_types;
            m_.insert_new.arg_descriptions = s.arg_descriptions;
            m_.insert_plain.sql = plain;
            m_.insert_plain.arg_types = s.arg_types;
            m_.insert_plain.arg_descriptions = s.arg_descriptions;
        }
    }

    void build_lookup() {
        PreparedStatement &s = m_.lookup;
        std::string aliases;
        std::string from = key_unnest(s, true, m_.order_column >= 0, aliases);
        std::string newer = m_.order_column >= 0 ? order_guard("t." + quote_ident(order().name),
                                                               typed(order(), "u.v"))
                                                 : "true";
        s.sql = "SELECT u.i, " + newer + " FROM " + from + " JOIN " + m_.target_name + " AS t ON " +
                key_match("t", "u.k");
    }

    void build_remove() {
        PreparedStatement &s = m_.remove;
        std::string aliases;
        std::string from = key_unnest(s, false, m_.order_column >= 0, aliases);
        s.sql = "DELETE FROM " + m_.target_name + " AS t USING " + from + " WHERE " +
                key_match("t", "u.k");
        s.join_in_batch_order = true;
        if (m_.order_column >= 0)
            s.sql += " AND " + order_guard("t." + quote_ident(order().name), typed(order(), "u.v"));
    }

    void build_tomb_any() {
        PreparedStatement &s = m_.tomb_any;
        add_param(s, TEXTOID, "collection_id text");
        s.sql = "SELECT 1 FROM sequin.tombstones AS tb WHERE tb.collection_id "
                "OPERATOR(pg_catalog.=) $1 LIMIT 1";
    }

    void build_tomb_lookup() {
        PreparedStatement &s = m_.tomb_lookup;
        std::string aliases;
        std::string from = key_unnest(s, true, true, aliases);
        add_param(s, TEXTOID, "collection_id text");
        std::string collection = "$" + std::to_string(s.arg_types.size());
        std::string version = "(tb.version)::" + type_sql(order().type->type_oid);
        s.sql = "SELECT u.i FROM " + from +
                " JOIN sequin.tombstones AS tb ON tb.collection_id OPERATOR(pg_catalog.=) " +
                collection + " AND tb.key OPERATOR(pg_catalog.=) " + tomb_key() + " WHERE NOT " +
                order_guard(version, typed(order(), "u.v"));
    }

    void build_tomb_upsert() {
        PreparedStatement &s = m_.tomb_upsert;
        std::string aliases;
        std::string from = key_unnest(s, false, true, aliases);
        add_param(s, TEXTOID, "collection_id text");
        std::string collection = "$" + std::to_string(s.arg_types.size());
        std::string ord = type_sql(order().type->type_oid);
        s.sql = "INSERT INTO sequin.tombstones AS tb (collection_id, key, version, deleted_at) "
                "SELECT " +
                collection + ", " + tomb_key() + ", (" + typed(order(), "u.v") +
                ")::pg_catalog.text, pg_catalog.now() FROM " + from +
                " ON CONFLICT (collection_id, key) DO UPDATE SET version = EXCLUDED.version, "
                "deleted_at = EXCLUDED.deleted_at WHERE " +
                order_guard("(tb.version)::" + ord, "(EXCLUDED.version)::" + ord);
    }
};

void prepare(PreparedStatement &s) {
    if (s.sql.empty())
        return;
    s.plan = pg_guard([&] {
        SPIPlanPtr plan = SPI_prepare_cursor(s.sql.c_str(), static_cast<int>(s.arg_types.size()),
                                             s.arg_types.data(), CURSOR_OPT_GENERIC_PLAN);
        if (!plan)
            elog(ERROR, "SPI_prepare failed for \"%s\": %s", s.sql.c_str(),
                 SPI_result_code_string(SPI_result));
        SPI_keepplan(plan);
        return plan;
    });
}

std::string join_names(const std::vector<std::string> &names) {
    std::string joined;
    for (const std::string &name : names)
        joined += (joined.empty() ? "" : ", ") + name;
    return joined;
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

void assign_key_slots(CompiledMapping &m) {
    static const char deleted[] = "deleted";
    std::vector<MappedColumn *> identity, values;
    for (MappedColumn &c : m.columns)
        if (!c.is_now)
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
    for (PreparedStatement *s : {&lookup, &upsert, &update_first, &insert_new, &insert_plain,
                                 &remove, &tomb_any, &tomb_lookup, &tomb_upsert})
        if (s->plan)
            SPI_freeplan(s->plan);
    if (context)
        MemoryContextDelete(context);
}

std::unique_ptr<CompiledMapping> compile_mapping(const MappingRow &row, bool deferred_checks,
                                                 bool prepare_statements) {
    auto m = std::make_unique<CompiledMapping>();
    m->row = row;
    const std::string &collection = row.collection_id;
    auto mapping_error = [&](int sqlstate, const std::string &what) {
        fail(sqlstate, "mapping \"" + collection + "\": " + what);
    };

    if (row.on_delete == "delete")
        m->on_delete = OnDelete::Delete;
    else if (row.on_delete == "upsert")
        m->on_delete = OnDelete::Upsert;
    else if (row.on_delete == "ignore")
        m->on_delete = OnDelete::Ignore;
    else
        mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                      "on_delete must be 'delete', 'upsert' or 'ignore', not '" + row.on_delete +
                          "'");

    TargetTable table = describe_target(row.target_table);
    m->target_name = table.qualified_name;
    if (table.relkind != RELKIND_RELATION && table.relkind != RELKIND_PARTITIONED_TABLE)
        mapping_error(ERRCODE_WRONG_OBJECT_TYPE,
                      "target " + table.display_name + " is not a table");

    std::vector<std::pair<std::string, Source>> sources;
    try {
        sources = parse_columns(row.columns_json);
    } catch (const SourceError &e) {
        mapping_error(ERRCODE_INVALID_PARAMETER_VALUE, e.what());
    }

    m->context = pg_guard([&] {
        return AllocSetContextCreate(CacheMemoryContext, "sequin mapping", ALLOCSET_SMALL_SIZES);
    });
    m->columns.reserve(sources.size()); // path_steps point into path_keys: no reallocation
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
        m->columns.emplace_back();
        MappedColumn &c = m->columns.back();
        c.name = name;
        c.attnum = target->attnum;
        c.is_now = source.is_now;
        c.path_keys = std::move(source.keys);
        for (size_t k = 0; k < c.path_keys.size(); k++)
            c.path_steps.push_back({c.path_keys[k].c_str(), static_cast<int>(c.path_keys[k].size()),
                                    source.array_indexes[k]});
        c.path = {static_cast<int>(c.path_steps.size()), c.path_steps.data()};
        c.type = pg_guard([&] {
            auto *vt = static_cast<ValueType *>(MemoryContextAlloc(m->context, sizeof(ValueType)));
            value_type_init(vt, target->type_oid, target->typmod, m->context);
            return vt;
        });
        // unnest() would spread a composite over several columns: those travel as text too.
        c.param_as_text = c.type->kind == ConvKind::Array ||
                          pg_guard([&] { return type_is_rowtype(target->type_oid); }) ||
                          !OidIsValid(pg_guard([&] { return get_array_type(target->type_oid); }));
        if (c.is_now && c.type->base_oid != TIMESTAMPOID && c.type->base_oid != TIMESTAMPTZOID &&
            c.type->base_oid != DATEOID)
            mapping_error(ERRCODE_DATATYPE_MISMATCH,
                          "\"$now\" cannot fill column \"" + name + "\" of type " +
                              type_display(target->type_oid, target->typmod) +
                              " (it needs timestamp, timestamptz or date)");
    }
    auto find_mapped = [&](const std::string &name, const char *setting) -> int {
        for (size_t i = 0; i < m->columns.size(); i++)
            if (m->columns[i].name == name)
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
        if (m->columns[index].is_now)
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                          "conflict column \"" + name + "\" cannot come from \"$now\"");
        if (std::find(m->key_columns.begin(), m->key_columns.end(), index) != m->key_columns.end())
            mapping_error(ERRCODE_DUPLICATE_COLUMN,
                          "conflict_columns names \"" + name + "\" twice");
        m->key_columns.push_back(index);
        m->columns[index].is_key = true;
        key_attnums.push_back(m->columns[index].attnum);
    }
    if (!deferred_checks && !key_attnums.empty()) {
        std::vector<AttrNumber> wanted = key_attnums;
        std::sort(wanted.begin(), wanted.end());
        auto covers_key = [&](const TargetIndex &index) {
            std::vector<AttrNumber> keys = index.keys;
            std::sort(keys.begin(), keys.end());
            return keys == wanted;
        };
        bool backed = std::any_of(
            table.unique_indexes.begin(), table.unique_indexes.end(),
            [&](const TargetIndex &index) { return !index.deferrable && covers_key(index); });
        if (!backed)
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
    }
    for (int k : m->key_columns)
        operator_sql(m->columns[k].type->type_oid, TYPECACHE_EQ_OPR, m->columns[k].name,
                     "equality");

    for (const std::string &name : row.keep_on_conflict) {
        int index = find_mapped(name, "keep_on_conflict");
        m->columns[index].keep_on_conflict = true;
    }

    if (row.order_column) {
        int index = find_mapped(*row.order_column, "order_column");
        MappedColumn &c = m->columns[index];
        if (c.is_now)
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                          "order_column \"" + c.name + "\" cannot come from \"$now\"");
        if (c.is_key)
            mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                          "order_column \"" + c.name + "\" cannot be a conflict column");
        operator_sql(c.type->type_oid, TYPECACHE_LT_OPR, c.name, "ordering");
        c.is_order = true;
        m->order_column = index;
        Oid type_oid = c.type->type_oid;
        pg_guard([&] {
            TypeCacheEntry *entry = lookup_type_cache(type_oid, TYPECACHE_CMP_PROC_FINFO);
            if (!OidIsValid(entry->cmp_proc_finfo.fn_oid))
                ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
                                errmsg("order_column type %s has no comparison function",
                                       format_type_be(type_oid))));
            fmgr_info_copy(&m->order_compare, &entry->cmp_proc_finfo, m->context);
            m->order_collation = get_typcollation(type_oid);
        });
    }

    if (row.required) {
        for (const std::string &name : *row.required) {
            int index = find_mapped(name, "required");
            if (m->columns[index].is_now)
                mapping_error(ERRCODE_INVALID_PARAMETER_VALUE,
                              "required column \"" + name + "\" comes from \"$now\"");
            m->columns[index].required = true;
        }
    } else {
        for (MappedColumn &c : m->columns)
            c.required = c.is_key || c.is_order;
    }

    assign_key_slots(*m);
    if (!m->key_columns.empty()) {
        StatementBuilder(*m).build();
        if (prepare_statements)
            for (PreparedStatement *s :
                 {&m->lookup, &m->upsert, &m->update_first, &m->insert_new, &m->insert_plain,
                  &m->remove, &m->tomb_any, &m->tomb_lookup, &m->tomb_upsert})
                prepare(*s);
    }
    return m;
}

} // namespace sequin
