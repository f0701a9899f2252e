// JSON value -> column Datum, driven by the column's type. C-shaped server code.
#include "pg/value_converter.hpp"
#include "pg/compat.hpp"
#include "pg/json_path.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
}

#include <cctype>
#include <cstring>

namespace sequin {

static ConvKind kind_of_base_type(Oid base) {
    switch (base) {
    case TEXTOID:
        return ConvKind::Text;
    case VARCHAROID:
    case BPCHAROID:
    case NAMEOID:
        return ConvKind::TextInput;
    case JSONOID:
        return ConvKind::Json;
    case JSONBOID:
        return ConvKind::Jsonb;
    case BOOLOID:
        return ConvKind::Bool;
    case INT2OID:
        return ConvKind::Int2;
    case INT4OID:
        return ConvKind::Int4;
    case INT8OID:
        return ConvKind::Int8;
    case NUMERICOID:
        return ConvKind::Numeric;
    case FLOAT4OID:
        return ConvKind::Float4;
    case FLOAT8OID:
        return ConvKind::Float8;
    case TIMESTAMPOID:
        return ConvKind::Timestamp;
    case TIMESTAMPTZOID:
        return ConvKind::TimestampTz;
    case DATEOID:
        return ConvKind::Date;
    default:
        return OidIsValid(get_element_type(base)) ? ConvKind::Array : ConvKind::Other;
    }
}

void value_type_init(ValueType *vt, Oid type_oid, int32 typmod, MemoryContext context) {
    memset(vt, 0, sizeof *vt);
    vt->type_oid = type_oid;
    vt->typmod = typmod;
    vt->base_typmod = typmod;
    vt->base_oid = getBaseTypeAndTypmod(type_oid, &vt->base_typmod);
    vt->is_domain = vt->base_oid != type_oid;
    get_typlenbyvalalign(type_oid, &vt->typlen, &vt->typbyval, &vt->typalign);
    vt->kind = kind_of_base_type(vt->base_oid);
    vt->context = context;
    Oid input_oid;
    getTypeInputInfo(vt->base_oid, &input_oid, &vt->input_ioparam);
    fmgr_info_cxt(input_oid, &vt->input_fn, context);
    if (vt->kind == ConvKind::Array) {
        Oid element_oid = get_element_type(vt->base_oid);
        vt->element = static_cast<ValueType *>(MemoryContextAlloc(context, sizeof(ValueType)));
        value_type_init(vt->element, element_oid, -1, context);
        get_typlenbyvalalign(element_oid, &vt->elem_len, &vt->elem_byval, &vt->elem_align);
    }
}

[[noreturn]] static void cannot_convert(const ValueType *vt, const JsonbValue *value) {
    ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                    errmsg("cannot convert a JSON %s to %s", json_type_name(*value),
                           format_type_with_typemod(vt->type_oid, vt->typmod))));
    pg_unreachable();
}

bool timestamp_text_has_zone(const char *text, int length) {
    // The zone follows the time of day: find its first ':' and look at what comes after
    // the digits, colons and fraction of the time.
    const char *colon = static_cast<const char *>(memchr(text, ':', length));
    if (!colon)
        return false;
    const char *end = text + length;
    const char *p = colon;
    while (p < end && (isdigit(static_cast<unsigned char>(*p)) || *p == ':' || *p == '.'))
        p++;
    while (p < end && *p == ' ')
        p++;
    // What follows, word by word: a sign or a word other than AM, PM (the time of day), BC
    // or AD (the era) is a zone.
    while (p < end) {
        if (*p == '+' || *p == '-')
            return true;
        if (!isalpha(static_cast<unsigned char>(*p)))
            return false;
        const char *word = p;
        while (p < end && *p != ' ')
            p++;
        int length_of_word = static_cast<int>(p - word);
        bool marker = length_of_word == 2 &&
                      (pg_strncasecmp(word, "AM", 2) == 0 || pg_strncasecmp(word, "PM", 2) == 0 ||
                       pg_strncasecmp(word, "BC", 2) == 0 || pg_strncasecmp(word, "AD", 2) == 0);
        if (!marker)
            return true;
        while (p < end && *p == ' ')
            p++;
    }
    return false;
}

// digits of text[at, at + count) as a number, or -1 when one is not a digit.
static int fixed_digits(const char *text, int at, int count) {
    int number = 0;
    for (int i = at; i < at + count; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        number = number * 10 + (text[i] - '0');
    }
    return number;
}

// The common spelling of API timestamps, RFC 3339 ("2024-05-01T14:00:00.123456+02:00",
// "...Z", no zone), read without the general date parser, which costs more than the rest
// of a record's conversion. Returns false for anything else (other spellings, leap
// seconds, "24:00", more than 6 fraction digits, out-of-range fields): the caller then
// uses the type's input function, so the result and the errors are PostgreSQL's own.
// *zoned says whether a zone was given; the result is then the instant, else the wall time.
static bool parse_rfc3339(const char *text, int length, Timestamp *result, bool *zoned) {
    if (length < 19 || text[4] != '-' || text[7] != '-' ||
        !(text[10] == 'T' || text[10] == 't' || text[10] == ' ') || text[13] != ':' ||
        text[16] != ':')
        return false;
    const int year = fixed_digits(text, 0, 4), month = fixed_digits(text, 5, 2),
              day = fixed_digits(text, 8, 2), hour = fixed_digits(text, 11, 2),
              minute = fixed_digits(text, 14, 2), second = fixed_digits(text, 17, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 ||
        minute > 59 || second < 0 || second > 59 || day > day_tab[isleap(year)][month - 1])
        return false;
    int at = 19;
    int64 fraction = 0;
    if (at < length && text[at] == '.') {
        int digits = 0;
        for (at++; at < length && text[at] >= '0' && text[at] <= '9'; at++, digits++)
            fraction = fraction * 10 + (text[at] - '0');
        if (digits == 0 || digits > 6)
            return false;
        for (; digits < 6; digits++)
            fraction *= 10;
    }
    int offset_seconds = 0;
    *zoned = at < length;
    if (at < length && (text[at] == 'Z' || text[at] == 'z')) {
        at++;
    } else if (at < length && (text[at] == '+' || text[at] == '-')) {
        const int sign = text[at] == '-' ? -1 : 1;
        const int rest = length - at - 1;
        int zone_hour = -1, zone_minute = 0;
        if (rest == 2) {
            zone_hour = fixed_digits(text, at + 1, 2);
        } else if (rest == 4) {
            zone_hour = fixed_digits(text, at + 1, 2);
            zone_minute = fixed_digits(text, at + 3, 2);
        } else if (rest == 5 && text[at + 3] == ':') {
            zone_hour = fixed_digits(text, at + 1, 2);
            zone_minute = fixed_digits(text, at + 4, 2);
        }
        if (zone_hour < 0 || zone_hour > MAX_TZDISP_HOUR || zone_minute < 0 || zone_minute > 59)
            return false;
        offset_seconds = sign * (zone_hour * SECS_PER_HOUR + zone_minute * SECS_PER_MINUTE);
        at = length;
    }
    if (at != length)
        return false;
    const int64 days = date2j(year, month, day) - POSTGRES_EPOCH_JDATE;
    const int64 seconds =
        ((days * HOURS_PER_DAY + hour) * MINS_PER_HOUR + minute) * SECS_PER_MINUTE + second;
    *result = (seconds - offset_seconds) * USECS_PER_SEC + fraction;
    return true;
}

static char *value_cstring(const JsonbValue *value) {
    return pnstrdup(value->val.string.val, value->val.string.len);
}

// The JSON text of a scalar number or boolean ("42", "true").
static char *scalar_json_text(const JsonbValue *value) {
    if (value->type == jbvBool)
        return pstrdup(value->val.boolean ? "true" : "false");
    return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(value->val.numeric)));
}

static Datum input_call(ValueType *vt, char *text) {
    return InputFunctionCall(&vt->input_fn, text, vt->input_ioparam, vt->base_typmod);
}

static Datum numeric_to_integer(ValueType *vt, Numeric number) {
    Datum n = NumericGetDatum(number);
    if (DatumGetInt32(DirectFunctionCall1(numeric_scale, n)) > 0) {
        Datum whole = DirectFunctionCall2(numeric_trunc, n, Int32GetDatum(0));
        if (!DatumGetBool(DirectFunctionCall2(numeric_eq, n, whole)))
            ereport(ERROR, (errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
                            errmsg("JSON number %s has a fraction and cannot be stored as %s",
                                   DatumGetCString(DirectFunctionCall1(numeric_out, n)),
                                   format_type_be(vt->base_oid))));
        n = whole;
    }
    switch (vt->kind) {
    case ConvKind::Int2:
        return DirectFunctionCall1(numeric_int2, n);
    case ConvKind::Int4:
        return DirectFunctionCall1(numeric_int4, n);
    default:
        return DirectFunctionCall1(numeric_int8, n);
    }
}

// Unix epoch seconds (Stripe's "created") as a timestamptz; also the UTC wall time when
// read as a timestamp, since both count microseconds from the same origin.
static Timestamp epoch_to_timestamp(Numeric number) {
    Datum seconds = DirectFunctionCall1(numeric_float8, NumericGetDatum(number));
    return DatumGetTimestampTz(DirectFunctionCall1(float8_timestamptz, seconds));
}

static Datum convert_array(ValueType *vt, const JsonbValue *value) {
    JsonbContainer *container = value->val.binary.data;
    int count = JsonContainerSize(container);
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (count > 0 ? count : 1)));
    bool *nulls = static_cast<bool *>(palloc(sizeof(bool) * (count > 0 ? count : 1)));
    for (int i = 0; i < count; i++) {
        JsonbValue *element = getIthJsonbValueFromContainer(container, i);
        nulls[i] = element->type == jbvNull;
        if (nulls[i]) {
            value_check_null(vt->element);
            elements[i] = (Datum)0;
        } else {
            elements[i] = value_convert(vt->element, element);
        }
    }
    int dims[1] = {count};
    int lower_bounds[1] = {1};
    ArrayType *array = count == 0 ? construct_empty_array(vt->element->type_oid)
                                  : construct_md_array(elements, nulls, 1, dims, lower_bounds,
                                                       vt->element->type_oid, vt->elem_len,
                                                       vt->elem_byval, vt->elem_align);
    return PointerGetDatum(array);
}

static Datum convert_to_base(ValueType *vt, const JsonbValue *value) {
    const bool is_string = value->type == jbvString;
    const bool is_number = value->type == jbvNumeric;
    const bool is_bool = value->type == jbvBool;
    const bool is_container = value->type == jbvBinary;

    switch (vt->kind) {
    case ConvKind::Jsonb:
        return JsonbPGetDatum(JsonbValueToJsonb(const_cast<JsonbValue *>(value)));
    case ConvKind::Json: {
        Jsonb *jsonb = JsonbValueToJsonb(const_cast<JsonbValue *>(value));
        char *text = JsonbToCString(nullptr, &jsonb->root, VARSIZE(jsonb));
        return input_call(vt, text);
    }
    case ConvKind::Text:
        if (is_string)
            return PointerGetDatum(
                cstring_to_text_with_len(value->val.string.val, value->val.string.len));
        if (is_number || is_bool)
            return CStringGetTextDatum(scalar_json_text(value));
        break;
    case ConvKind::TextInput:
        if (is_string)
            return input_call(vt, value_cstring(value));
        if (is_number || is_bool)
            return input_call(vt, scalar_json_text(value));
        break;
    case ConvKind::Bool:
        if (is_bool)
            return BoolGetDatum(value->val.boolean);
        if (is_string)
            return input_call(vt, value_cstring(value));
        break;
    case ConvKind::Int2:
    case ConvKind::Int4:
    case ConvKind::Int8:
        if (is_number)
            return numeric_to_integer(vt, value->val.numeric);
        if (is_string)
            return input_call(vt, value_cstring(value));
        break;
    case ConvKind::Numeric:
        if (is_number) {
            Datum n = NumericGetDatum(value->val.numeric);
            if (vt->base_typmod >= 0)
                n = DirectFunctionCall2(numeric, n, Int32GetDatum(vt->base_typmod));
            return n;
        }
        if (is_string)
            return input_call(vt, value_cstring(value));
        break;
    case ConvKind::Float4:
        if (is_number)
            return DirectFunctionCall1(numeric_float4, NumericGetDatum(value->val.numeric));
        if (is_string)
            return input_call(vt, value_cstring(value));
        break;
    case ConvKind::Float8:
        if (is_number)
            return DirectFunctionCall1(numeric_float8, NumericGetDatum(value->val.numeric));
        if (is_string)
            return input_call(vt, value_cstring(value));
        break;
    case ConvKind::Timestamp:
    case ConvKind::TimestampTz: {
        Timestamp result;
        if (is_number) {
            result = epoch_to_timestamp(value->val.numeric);
        } else if (is_string) {
            const char *text = value->val.string.val;
            const int length = value->val.string.len;
            bool zoned;
            if (parse_rfc3339(text, length, &result, &zoned) &&
                (zoned || vt->kind == ConvKind::Timestamp)) {
                // an instant, or the wall time of a timestamp without time zone
            } else if (vt->kind == ConvKind::Timestamp && !timestamp_text_has_zone(text, length)) {
                return input_call(vt, value_cstring(value));
            } else {
                // An instant; into timestamp, as UTC wall time. (Without a zone, a
                // timestamptz is read in the session's TimeZone.)
                result = DatumGetTimestampTz(
                    DirectFunctionCall3(timestamptz_in, CStringGetDatum(value_cstring(value)),
                                        ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
            }
        } else {
            break;
        }
        if (vt->base_typmod >= 0)
            sequin_adjust_timestamp_for_typmod(&result, vt->base_typmod);
        return TimestampGetDatum(result);
    }
    case ConvKind::Date:
        if (is_number)
            return DirectFunctionCall1(timestamp_date,
                                       TimestampGetDatum(epoch_to_timestamp(value->val.numeric)));
        if (is_string)
            return input_call(vt, value_cstring(value));
        break;
    case ConvKind::Array:
        if (is_container && JsonContainerIsArray(value->val.binary.data))
            return convert_array(vt, value);
        if (is_string)
            return input_call(vt, value_cstring(value));
        break;
    case ConvKind::Other:
        if (is_string)
            return input_call(vt, value_cstring(value));
        break;
    }
    cannot_convert(vt, value);
}

Datum value_convert(ValueType *vt, const JsonbValue *value) {
    Datum result = convert_to_base(vt, value);
    if (vt->is_domain)
        domain_check(result, false, vt->type_oid, &vt->domain_cache, vt->context);
    return result;
}

void value_check_null(ValueType *vt) {
    if (vt->is_domain)
        domain_check((Datum)0, true, vt->type_oid, &vt->domain_cache, vt->context);
}

} // namespace sequin
