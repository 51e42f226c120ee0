/*
 * schema_format: the "format" values jobgate asserts; see schema.h.
 *
 * Owns nothing: each check is a pure function of the text. Every check reads the
 * grammar of its RFC byte by byte, accepts ASCII only, and refuses anything it does not
 * fully understand, because a value that passes here reaches worker code as trusted.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "schema.h"

/* RFC 5321 section 4.5.3.1: local part, domain and whole path. */
#define EMAIL_MAX_LOCAL_PART 64
#define EMAIL_MAX_DOMAIN 255
#define HOSTNAME_MAX 253
#define HOSTNAME_MAX_LABEL 63

struct format_name {
    const char *name;
    enum schema_format format;
};

static const struct format_name format_names[] = {
    {"date-time", SCHEMA_FORMAT_DATE_TIME},
    {"date", SCHEMA_FORMAT_DATE},
    {"email", SCHEMA_FORMAT_EMAIL},
    {"uuid", SCHEMA_FORMAT_UUID},
    {"uri", SCHEMA_FORMAT_URI},
    {"ipv4", SCHEMA_FORMAT_IPV4},
    {"ipv6", SCHEMA_FORMAT_IPV6},
};

enum schema_format schema_format_named(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof format_names / sizeof format_names[0]; i++) {
        if (strlen(format_names[i].name) == len && memcmp(format_names[i].name, name, len) == 0)
            return format_names[i].format;
    }
    return SCHEMA_FORMAT_NONE;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* Reads count digits at text as a number, or returns -1 when one is not a digit. */
static int read_digits(const char *text, size_t count)
{
    int value = 0;
    for (size_t i = 0; i < count; i++) {
        if (!is_digit(text[i]))
            return -1;
        value = value * 10 + (text[i] - '0');
    }
    return value;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    return month == 2 && leap ? 29 : days[month - 1];
}

/* RFC 3339 full-date: exactly YYYY-MM-DD with a day that exists. */
static bool check_full_date(const char *text)
{
    int year = read_digits(text, 4);
    int month = read_digits(text + 5, 2);
    int day = read_digits(text + 8, 2);
    if (year < 0 || month < 1 || month > 12 || day < 1 || text[4] != '-' || text[7] != '-')
        return false;
    return day <= days_in_month(year, month);
}

static bool check_date(const char *text, size_t len)
{
    return len == 10 && check_full_date(text);
}

/*
 * RFC 3339 date-time. A leap second is allowed only where one can happen: at 23:59:60
 * in UTC once the offset is taken away.
 */
static bool check_date_time(const char *text, size_t len)
{
    /* YYYY-MM-DDTHH:MM:SS is 19 bytes; at least "Z" follows. */
    if (len < 20 || !check_full_date(text) || (text[10] != 'T' && text[10] != 't'))
        return false;
    int hour = read_digits(text + 11, 2);
    int minute = read_digits(text + 14, 2);
    int second = read_digits(text + 17, 2);
    if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60 ||
        text[13] != ':' || text[16] != ':')
        return false;

    size_t at = 19;
    if (text[at] == '.') {
        size_t digits_start = ++at;
        while (at < len && is_digit(text[at]))
            at++;
        if (at == digits_start)
            return false;
    }
    if (at >= len)
        return false;

    int offset_minutes = 0;
    if ((text[at] == 'Z' || text[at] == 'z') && at + 1 == len) {
        offset_minutes = 0;
    } else if ((text[at] == '+' || text[at] == '-') && at + 6 == len) {
        int offset_hour = read_digits(text + at + 1, 2);
        int offset_minute = read_digits(text + at + 4, 2);
        if (offset_hour < 0 || offset_hour > 23 || offset_minute < 0 || offset_minute > 59 ||
            text[at + 3] != ':')
            return false;
        offset_minutes = (offset_hour * 60 + offset_minute) * (text[at] == '-' ? -1 : 1);
    } else {
        return false;
    }

    if (second == 60) {
        int utc_minute = ((hour * 60 + minute - offset_minutes) % 1440 + 1440) % 1440;
        return utc_minute == 23 * 60 + 59;
    }
    return true;
}

/* Dotted quad of decimal octets; leading zeros are refused (some parsers read octal). */
static bool check_ipv4(const char *text, size_t len)
{
    size_t at = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (at >= len || text[at] != '.')
                return false;
            at++;
        }
        size_t start = at;
        int value = 0;
        while (at < len && is_digit(text[at]) && at - start < 3)
            value = value * 10 + (text[at++] - '0');
        size_t digits = at - start;
        if (digits == 0 || value > 255 || (digits > 1 && text[start] == '0'))
            return false;
    }
    return at == len;
}

/* RFC 4291 section 2.2: eight groups, "::" once for one or more, IPv4 at the end. */
static bool check_ipv6(const char *text, size_t len)
{
    size_t at = 0;
    int groups = 0;
    bool compressed = false;

    if (len >= 2 && text[0] == ':' && text[1] == ':') {
        compressed = true;
        at = 2;
    } else if (len == 0 || text[0] == ':') {
        return false;
    }
    while (at < len) {
        size_t end = at;
        bool dotted = false;
        while (end < len && text[end] != ':') {
            dotted = dotted || text[end] == '.';
            end++;
        }
        if (dotted) {
            /* An embedded IPv4 address is the last piece and stands for two groups. */
            if (end != len || !check_ipv4(text + at, end - at))
                return false;
            groups += 2;
            break;
        }
        if (end == at || end - at > 4)
            return false;
        for (size_t i = at; i < end; i++) {
            if (!is_hex(text[i]))
                return false;
        }
        groups++;
        if (groups > 8)
            return false;
        at = end;
        if (at == len)
            break;
        if (at + 1 < len && text[at + 1] == ':') {
            if (compressed)
                return false;
            compressed = true;
            at += 2;
        } else {
            at++;
            if (at == len)
                return false;
        }
    }
    return compressed ? groups <= 7 : groups == 8;
}

static bool check_uuid(const char *text, size_t len)
{
    if (len != 36)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool hyphen_place = i == 8 || i == 13 || i == 18 || i == 23;
        if (hyphen_place ? text[i] != '-' : !is_hex(text[i]))
            return false;
    }
    return true;
}

/* RFC 5322 atext, which RFC 5321's Atom uses. */
static bool is_atext(char c)
{
    return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens. */
static bool check_hostname(const char *text, size_t len)
{
    if (len == 0 || len > HOSTNAME_MAX)
        return false;
    size_t label_start = 0;
    for (size_t at = 0; at <= len; at++) {
        if (at < len && text[at] != '.') {
            if (!is_alpha(text[at]) && !is_digit(text[at]) && text[at] != '-')
                return false;
            continue;
        }
        size_t label_len = at - label_start;
        if (label_len == 0 || label_len > HOSTNAME_MAX_LABEL || text[label_start] == '-' ||
            text[at - 1] == '-')
            return false;
        label_start = at + 1;
    }
    return true;
}

/* The local part: a dot-atom or a quoted string; returns its length or 0 when invalid. */
static size_t email_local_part(const char *text, size_t len)
{
    size_t at = 0;
    if (len > 0 && text[0] == '"') {
        for (at = 1; at < len && text[at] != '"'; at++) {
            unsigned char c = (unsigned char)text[at];
            if (c == '\\') {
                at++;
                if (at >= len || (unsigned char)text[at] < 32 || (unsigned char)text[at] > 126)
                    return 0;
            } else if (c < 32 || c > 126) {
                return 0;
            }
        }
        return at < len ? at + 1 : 0;
    }
    bool after_dot = true;
    for (; at < len && text[at] != '@'; at++) {
        if (text[at] == '.') {
            if (after_dot)
                return 0;
            after_dot = true;
        } else if (is_atext(text[at])) {
            after_dot = false;
        } else {
            return 0;
        }
    }
    return after_dot ? 0 : at;
}

/* An address literal: [IPv4] or [IPv6:address], the tag in either case. */
static bool check_address_literal(const char *text, size_t len)
{
    if (len < 2 || text[0] != '[' || text[len - 1] != ']')
        return false;
    const char *inside = text + 1;
    size_t inside_len = len - 2;
    if (inside_len > 5 && strncasecmp(inside, "IPv6:", 5) == 0)
        return check_ipv6(inside + 5, inside_len - 5);
    return check_ipv4(inside, inside_len);
}

static bool check_email(const char *text, size_t len)
{
    size_t local_len = email_local_part(text, len);
    if (local_len == 0 || local_len > EMAIL_MAX_LOCAL_PART || local_len >= len ||
        text[local_len] != '@')
        return false;
    const char *domain = text + local_len + 1;
    size_t domain_len = len - local_len - 1;
    if (domain_len > EMAIL_MAX_DOMAIN)
        return false;
    if (domain_len > 0 && domain[0] == '[')
        return check_address_literal(domain, domain_len);
    return check_hostname(domain, domain_len);
}

static bool is_unreserved(char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static bool is_sub_delim(char c)
{
    return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

/*
 * Checks that text[start, end) holds only unreserved characters, sub-delims,
 * percent-encodings and the bytes of extra.
 */
static bool uri_chars(const char *text, size_t start, size_t end, const char *extra)
{
    for (size_t at = start; at < end; at++) {
        char c = text[at];
        if (c == '%') {
            if (end - at < 3 || !is_hex(text[at + 1]) || !is_hex(text[at + 2]))
                return false;
            at += 2;
        } else if (!is_unreserved(c) && !is_sub_delim(c) && (c == '\0' || !strchr(extra, c))) {
            return false;
        }
    }
    return true;
}

/* RFC 3986 IP-literal inside brackets: an IPv6 address or IPvFuture. */
static bool check_ip_literal(const char *text, size_t len)
{
    if (len > 0 && (text[0] == 'v' || text[0] == 'V')) {
        size_t at = 1;
        while (at < len && is_hex(text[at]))
            at++;
        if (at == 1 || at >= len || text[at] != '.' || at + 1 == len)
            return false;
        for (at++; at < len; at++) {
            if (!is_unreserved(text[at]) && !is_sub_delim(text[at]) && text[at] != ':')
                return false;
        }
        return true;
    }
    return check_ipv6(text, len);
}

/* authority = [ userinfo "@" ] host [ ":" port ], in text[start, end). */
static bool check_authority(const char *text, size_t start, size_t end)
{
    const char *at_sign = memchr(text + start, '@', end - start);
    if (at_sign != NULL) {
        size_t userinfo_end = (size_t)(at_sign - text);
        if (!uri_chars(text, start, userinfo_end, ":"))
            return false;
        start = userinfo_end + 1;
    }

    size_t host_end;
    if (start < end && text[start] == '[') {
        const char *close = memchr(text + start, ']', end - start);
        if (close == NULL)
            return false;
        host_end = (size_t)(close - text) + 1;
        if (!check_ip_literal(text + start + 1, host_end - start - 2))
            return false;
    } else {
        const char *colon = memchr(text + start, ':', end - start);
        host_end = colon != NULL ? (size_t)(colon - text) : end;
        if (!uri_chars(text, start, host_end, ""))
            return false;
    }

    if (host_end == end)
        return true;
    if (text[host_end] != ':')
        return false;
    for (size_t at = host_end + 1; at < end; at++) {
        if (!is_digit(text[at]))
            return false;
    }
    return true;
}

/* RFC 3986 URI = scheme ":" hier-part [ "?" query ] [ "#" fragment ]. */
static bool check_uri(const char *text, size_t len)
{
    size_t at = 0;
    if (len == 0 || !is_alpha(text[0]))
        return false;
    while (at < len && (is_alpha(text[at]) || is_digit(text[at]) || text[at] == '+' ||
                        text[at] == '-' || text[at] == '.'))
        at++;
    if (at == len || text[at] != ':')
        return false;
    at++;

    size_t fragment = len;
    const char *hash = memchr(text + at, '#', len - at);
    if (hash != NULL)
        fragment = (size_t)(hash - text);
    size_t query = fragment;
    const char *question = memchr(text + at, '?', fragment - at);
    if (question != NULL)
        query = (size_t)(question - text);

    size_t path = at;
    if (query - at >= 2 && text[at] == '/' && text[at + 1] == '/') {
        size_t authority_end = at + 2;
        while (authority_end < query && text[authority_end] != '/')
            authority_end++;
        if (!check_authority(text, at + 2, authority_end))
            return false;
        path = authority_end;
    }
    if (!uri_chars(text, path, query, ":@/"))
        return false;
    if (query < fragment && !uri_chars(text, query + 1, fragment, ":@/?"))
        return false;
    return fragment == len || uri_chars(text, fragment + 1, len, ":@/?");
}

bool schema_format_check(enum schema_format format, const char *text, size_t len)
{
    switch (format) {
    case SCHEMA_FORMAT_DATE_TIME:
        return check_date_time(text, len);
    case SCHEMA_FORMAT_DATE:
        return check_date(text, len);
    case SCHEMA_FORMAT_EMAIL:
        return check_email(text, len);
    case SCHEMA_FORMAT_UUID:
        return check_uuid(text, len);
    case SCHEMA_FORMAT_URI:
        return check_uri(text, len);
    case SCHEMA_FORMAT_IPV4:
        return check_ipv4(text, len);
    case SCHEMA_FORMAT_IPV6:
        return check_ipv6(text, len);
    case SCHEMA_FORMAT_NONE:
        break;
    }
    return false;
}
