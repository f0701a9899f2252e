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

struct Source {
    bool is_now = false;
    std::vector<std::string> keys;  // the path's keys, in order
    std::vector<int> array_indexes; // per key: its value if all digits (< 10^9), else -1
};

// Parses one column's source.
Source parse_source(const std::string &column, const nlohmann::json &source);

// Parses a whole "columns" document: a non-empty object of target column -> source.
std::vector<std::pair<std::string, Source>> parse_columns(const std::string &json_text);

} // namespace sequin
