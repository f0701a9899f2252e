// Walking mapping paths on the binary jsonb container, without converting to text.
#include "json_path.hpp"

#include <cstring>

namespace sequin {

bool json_key_find(JsonbContainer *object, const char *key, JsonbValue *found) {
    if (!JsonContainerIsObject(object))
        return false;
    return getKeyJsonValueFromContainer(object, key, static_cast<int>(std::strlen(key)), found) !=
           nullptr;
}

bool json_path_find(JsonbContainer *root, const JsonPath &path, JsonbValue *found) {
    JsonbContainer *container = root;
    for (int i = 0; i < path.step_count; i++) {
        const PathStep &step = path.steps[i];
        if (JsonContainerIsObject(container)) {
            if (!getKeyJsonValueFromContainer(container, step.key, step.key_length, found))
                return false;
        } else if (JsonContainerIsArray(container) && step.array_index >= 0) {
            JsonbValue *element = getIthJsonbValueFromContainer(container, step.array_index);
            if (!element)
                return false;
            *found = *element;
            pfree(element);
        } else {
            return false;
        }
        if (i + 1 < path.step_count) {
            if (found->type != jbvBinary)
                return false;
            container = found->val.binary.data;
        }
    }
    return true;
}

const char *json_type_name(const JsonbValue &value) {
    switch (value.type) {
    case jbvNull:
        return "null";
    case jbvString:
        return "string";
    case jbvNumeric:
        return "number";
    case jbvBool:
        return "boolean";
    case jbvArray:
        return "array";
    case jbvObject:
        return "object";
    case jbvBinary:
        return JsonContainerIsArray(value.val.binary.data) ? "array" : "object";
    default:
        return "unknown";
    }
}

} // namespace sequin
