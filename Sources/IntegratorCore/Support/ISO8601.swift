// The one reader of ISO 8601 instants for every route, service and command.
import Foundation

extension Date {
    /// An ISO 8601 instant with a UTC offset or `Z`, with or without fractional seconds (the API writes them, people
    /// often do not): `2026-11-23T12:00:00Z`, `2026-11-23T09:00:00.250-03:00`. `nil` for anything else.
    public init?(iso8601 text: String) {
        if let date = try? Date(text, strategy: .iso8601) {
            self = date
        } else if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
            self = date
        } else {
            return nil
        }
    }

    /// What to tell someone whose text was not an instant ``init(iso8601:)`` reads.
    public static let iso8601Expectation = "must be an ISO 8601 date-time with a UTC offset, such as 2026-11-23T12:00:00Z"
}
