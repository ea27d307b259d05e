// A status check for statements that find their rows by id, kept away from the planner's statistics.
import SQLKit

extension SQLQueryString {
    /// `column IN (values)`, written as a `CASE` so that PostgreSQL neither serves it from an index on the column nor
    /// estimates it from the column's statistics (it counts on half the rows). For statements that find rows by id
    /// and then check their status (`pending`, `queued`…): statistics taken after an idle spell, when every row had
    /// finished, put pending rows at one, and the planner then read the rows through the status index (every pending
    /// row, once per statement) or, on a small table, joined a scan of it against every id in the batch. Either way a
    /// statement cost as much as the whole backlog. A statement that really selects by status (a sweep of due rows)
    /// should compare the column plainly, so that its index serves it.
    public static func statusIsOneOf(_ column: String, _ values: [String]) -> SQLQueryString {
        "(CASE WHEN \(unsafeRaw: column) IN (\(binds: values)) THEN TRUE ELSE FALSE END)"
    }
}
