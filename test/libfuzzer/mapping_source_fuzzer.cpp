// libFuzzer target for the mapping source parser (src/mapping/mapping_source.cpp): any byte string
// as a "columns" document must parse or raise SourceError, never crash or hit UB.
#include "mapping/mapping_source.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::string text(reinterpret_cast<const char *>(data), size);
    try {
        auto columns = sequin::parse_columns(text);
        for (const auto &[name, source] : columns) {
            if (source.is_now)
                continue;
            if (source.keys.size() != source.array_indexes.size() || source.keys.empty())
                __builtin_trap(); // an accepted path always has keys, each with its index
            for (size_t i = 0; i < source.keys.size(); i++)
                if (source.keys[i].empty() || source.array_indexes[i] < -1)
                    __builtin_trap();
        }
    } catch (const sequin::SourceError &) {
    }
    return 0;
}
