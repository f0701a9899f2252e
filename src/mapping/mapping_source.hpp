// The source language of a mapping's "columns" object: a dotted path, an array of keys, or
// "$now". Pure C++ (no server headers), so it can be fuzzed outside the server.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sequin {

// A source that cannot be parsed; what() says why, without naming the mapping.
struct SourceError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// Where a column's value comes from: a path from the record's root (for a child mapping, from
// its list element), or one of the special sources.
enum class SourceKind {
    Path,
    Now,        // "$now": the transaction timestamp
    ParentPath, // "$parent.<path>": a path from the parent's root (child mappings)
    Index,      // "$index": the element's 0-based place in its list (child mappings)
    Element     // "$element": the list element itself (child mappings)
};

struct Source {
    SourceKind kind = SourceKind::Path;
    bool is_now = false;
    std::vector<std::string> keys;  // the path's keys, in order
    std::vector<int> array_indexes; // per key: its value if all digits (< 10^9), else -1
};

// Parses one column's source.
Source parse_source(const std::string &column, const nlohmann::json &source);

// Parses a child mapping's list_source (a path: no special source), as JSON text.
Source parse_list_source(const std::string &json_text);

// Parses a whole "columns" document: a non-empty object of target column -> source.
std::vector<std::pair<std::string, Source>> parse_columns(const std::string &json_text);

} // namespace sequin
