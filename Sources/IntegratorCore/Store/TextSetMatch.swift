// Matching a column against a list of texts, in the form each engine reads best.
import SQLKit

extension SQLQueryString {
    /// `= ANY($1::text[])` on PostgreSQL, `IN (?, ?, …)` on SQLite, to follow a column name. PostgreSQL then gets one
    /// parameter and one statement shape whatever the count; SQLite has no arrays. `values` must not be empty.
    public static func isOneOf(_ values: [String], on sql: any SQLDatabase) -> SQLQueryString {
        sql.dialect.name == "postgresql" ? "= ANY(\(bind: values)::text[])" : "IN (\(binds: values))"
    }
}
