// Parsing mapping sources: see mapping_source.hpp.
#include "mapping/mapping_source.hpp"

namespace sequin {

namespace {

bool all_digits(const std::string &key) {
    for (unsigned char c : key)
        if (c < '0' || c > '9')
            return false;
    return !key.empty();
}

} // namespace

Source parse_source(const std::string &column, const nlohmann::json &source) {
    auto fail = [&](const std::string &what) {
        throw SourceError("source of column \"" + column + "\" " + what);
    };
    Source out;
    if (source.is_string()) {
        const std::string &text = source.get_ref<const std::string &>();
        if (text == "$now") {
            out.is_now = true;
            out.kind = SourceKind::Now;
            return out;
        }
        if (text == "$index" || text == "$element") {
            out.kind = text == "$index" ? SourceKind::Index : SourceKind::Element;
            return out;
        }
        std::string path = text;
        static const std::string parent_prefix = "$parent.";
        if (text.compare(0, parent_prefix.size(), parent_prefix) == 0) {
            out.kind = SourceKind::ParentPath;
            path = text.substr(parent_prefix.size());
        } else if (!text.empty() && text[0] == '$') {
            // "$rest" is not built yet: read as a path, it would silently store NULL.
            fail("\"" + text +
                 "\" is not supported: the special sources are \"$now\", \"$parent.<path>\", "
                 "\"$index\" and \"$element\" (to read a key that starts with \"$\", give the "
                 "path as an array of keys: [\"" +
                 text.substr(0, text.find('.')) + "\", ...])");
        }
        size_t start = 0;
        while (true) {
            size_t dot = path.find('.', start);
            out.keys.push_back(path.substr(start, dot == std::string::npos ? dot : dot - start));
            if (dot == std::string::npos)
                break;
            start = dot + 1;
        }
    } else if (source.is_array() && !source.empty()) {
        for (const auto &key : source) {
            if (!key.is_string())
                fail("must be an array of strings, not " + source.dump());
            out.keys.push_back(key.get<std::string>());
        }
    } else {
        fail("must be a path string, an array of keys or \"$now\", not " + source.dump());
    }
    for (const auto &key : out.keys) {
        if (key.empty())
            fail("has an empty key: " + source.dump());
        out.array_indexes.push_back(all_digits(key) && key.size() <= 9 ? std::stoi(key) : -1);
    }
    return out;
}

Source parse_list_source(const std::string &json_text) {
    nlohmann::json source;
    try {
        source = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::exception &) {
        throw SourceError("list_source must be a path string or an array of keys");
    }
    Source parsed = parse_source("list_source", source);
    if (parsed.kind != SourceKind::Path)
        throw SourceError("list_source must be a path in the parent's record, not " +
                          source.dump());
    return parsed;
}

std::vector<std::pair<std::string, Source>> parse_columns(const std::string &json_text) {
    nlohmann::json columns;
    try {
        columns = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::exception &) {
        // PostgreSQL accepted it as jsonb: what fails here is a number beyond a double.
        throw SourceError("columns holds a number too large to read; sources are strings "
                          "or arrays of strings");
    }
    if (!columns.is_object() || columns.empty())
        throw SourceError("columns must be a non-empty JSON object of target column -> source");
    std::vector<std::pair<std::string, Source>> parsed;
    for (auto it = columns.begin(); it != columns.end(); ++it)
        parsed.emplace_back(it.key(), parse_source(it.key(), it.value()));
    return parsed;
}

} // namespace sequin
