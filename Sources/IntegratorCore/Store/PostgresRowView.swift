// Rows of the statements run through the statement cache, decoding the column types the store reads without going
// through PostgresKit's generic path.
import Foundation
import PostgresKit
import PostgresNIO
import SQLKit

/// A PostgreSQL row as an `SQLRow`. For the types the store reads (strings, integers, dates, booleans, doubles and
/// their optionals) a value is decoded straight from its cell. PostgresKit's row does the same decoding, but first
/// builds a coding path, checks the type against its protocols with dynamic casts and allocates arrays for its Fluent
/// workarounds, per value, and a row of webhook events holds 16. That was about 5 % of a delivery's CPU. Every other
/// type, and a missing column, goes to PostgresKit's row, so results and errors stay the same.
struct PostgresRowView: SQLRow {
    private let row: PostgresRow
    private let cells: PostgresRandomAccessRow

    init(_ row: PostgresRow) {
        self.row = row
        self.cells = PostgresRandomAccessRow(row)
    }

    var allColumns: [String] { cells.map(\.columnName) }

    func contains(column: String) -> Bool { cells.contains(column) }

    func decodeNil(column: String) throws -> Bool { !cells.contains(column) || cells[column].bytes == nil }

    func decode<T: Decodable>(column: String, as type: T.Type) throws -> T {
        guard cells.contains(column) else { return try row.sql().decode(column: column, as: T.self) }
        let cell = cells[column]
        // PostgresKit reads user-defined types (enums) as strings and numeric as doubles by workarounds of its own.
        guard !cell.dataType.isUserDefined, cell.dataType != .numeric else {
            return try row.sql().decode(column: column, as: T.self)
        }
        // Metatype comparisons are pointer comparisons; the casts below are between identical types.
        if T.self == String.self { return try cell.decode(String.self) as! T }
        if T.self == Int.self { return try cell.decode(Int.self) as! T }
        if T.self == Date.self { return try cell.decode(Date.self) as! T }
        if T.self == String?.self { return try cell.decode(String?.self) as! T }
        if T.self == Date?.self { return try cell.decode(Date?.self) as! T }
        if T.self == Bool.self { return try cell.decode(Bool.self) as! T }
        if T.self == Int?.self { return try cell.decode(Int?.self) as! T }
        if T.self == Int64.self { return try cell.decode(Int64.self) as! T }
        if T.self == Double.self { return try cell.decode(Double.self) as! T }
        return try row.sql().decode(column: column, as: T.self)
    }
}
