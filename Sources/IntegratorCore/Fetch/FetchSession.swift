// One run of a provider's fetch: the record sink and the state it is given, writing records in batches as they come.
import Crypto
import Foundation

/// Receives a provider's records and checkpoints. Records are normalized, hashed and buffered; every
/// `batchSize` records the buffer is written in one transaction with its events and the checkpoints made so far
/// (a checkpoint waits at most ``checkpointDelay`` for its batch).
///
/// Writes run behind the provider, one at a time and in order: while a batch is stored the provider reads its next
/// page, and it waits only when it gets a whole batch ahead. Memory stays bounded by two batches however long the
/// fetch runs.
actor FetchSession: RecordSink, FetchState {
    private let integrationID: String
    private let provider: any ProviderBackend
    private let store: RecordStore
    private let clock: any TimeSource
    private let batchSize: Int
    private let started = ContinuousClock.now
    private let onProgress: @Sendable (FetchSummary) -> Void

    private var cursors: [String: JSONValue]
    private var buffer: [PreparedRecord] = []
    /// Position in `buffer` of each buffered record, so a record yielded twice before a write is written once.
    private var buffered: [RecordKey: Int] = [:]
    private var pendingCheckpoints: [String: JSONValue] = [:]
    /// Checkpoints made since the last write was queued (one stream may checkpoint twice meanwhile).
    private var pendingPages = 0
    private var lastQueued = ContinuousClock.now
    /// The longest a checkpoint waits for a full batch before it is written anyway.
    static let checkpointDelay = Duration.seconds(1)
    private var summary: FetchSummary
    /// The last write queued. Each write waits for the one before it, so they commit in order and a checkpoint is
    /// never committed before the records yielded ahead of it.
    private var lastWrite: Task<Void, any Error>?

    private struct RecordKey: Hashable {
        var stream: String
        var externalID: String
    }

    init(
        integration: Integration, provider: any ProviderBackend, store: RecordStore, cursors: [String: JSONValue],
        clock: any TimeSource, batchSize: Int, onProgress: @escaping @Sendable (FetchSummary) -> Void
    ) {
        self.integrationID = integration.id
        self.provider = provider
        self.store = store
        self.cursors = cursors
        self.clock = clock
        self.batchSize = min(max(1, batchSize), RecordStore.maximumBatchSize)
        self.onProgress = onProgress
        self.summary = FetchSummary(integrationID: integration.id, integrationName: integration.name, provider: provider.id)
    }

    // MARK: RecordSink

    func emit(_ record: RawRecord) async throws {
        let prepared = try prepare(record)
        summary.received += 1
        let key = RecordKey(stream: prepared.stream, externalID: prepared.externalID)
        if let index = buffered[key] {
            buffer[index] = prepared
        } else {
            buffered[key] = buffer.count
            buffer.append(prepared)
        }
        if buffer.count >= batchSize { try await queueWrites() }
    }

    // MARK: FetchState

    func cursor(for stream: String) async throws -> JSONValue? { cursors[stream] }

    func checkpoint(_ cursor: JSONValue, for stream: String) async throws {
        cursors[stream] = cursor
        pendingCheckpoints[stream] = cursor
        pendingPages += 1
        // A checkpoint rides with the next batch rather than forcing a small one: until it is written, a crash
        // only means reading a few pages again. It waits at most `checkpointDelay`, so slow sources still save
        // their progress.
        if ContinuousClock.now - lastQueued >= Self.checkpointDelay { try await queueWrites() }
    }

    // MARK: Running

    /// Writes what is still buffered, waits for every write, and returns the final counts.
    func finish() async throws -> FetchSummary {
        try await queueWrites()
        try await lastWrite?.value
        return progress()
    }

    /// Waits for the writes already queued, whatever their outcome (after a failure or a cancellation).
    func settle() async {
        _ = try? await lastWrite?.value
    }

    /// The counts so far.
    func progress() -> FetchSummary {
        var snapshot = summary
        snapshot.elapsed = ContinuousClock.now - started
        return snapshot
    }

    private func prepare(_ raw: RawRecord) throws -> PreparedRecord {
        let record: RawRecord
        do {
            record = try provider.normalize(raw)
        } catch let error as PluginError {
            throw PluginError(
                "normalizing record \(raw.externalID) of stream \(raw.stream) failed: \(error.message)", permanent: error.isPermanent)
        } catch {
            throw PluginError("normalizing record \(raw.externalID) of stream \(raw.stream) failed: \(error)")
        }
        if let problem = Self.problem(with: record) { throw PluginError(problem, permanent: true) }
        let json = record.data.canonicalText
        return PreparedRecord(
            stream: record.stream, externalID: record.externalID, json: json, contentHash: Self.hash(json))
    }

    /// Why a provider's record cannot be stored, in words for the provider's author.
    static func problem(with record: RawRecord) -> String? {
        if record.stream.isEmpty || record.stream.utf8.count > 100 {
            return "the provider yielded a record whose stream name is empty or longer than 100 bytes"
        }
        if record.externalID.isEmpty || record.externalID.utf8.count > 500 {
            return "the provider yielded a record of stream \(record.stream) whose external id is empty or longer than 500 bytes"
        }
        return nil
    }

    /// SHA-256 of the canonical JSON, as lowercase hex.
    static func hash(_ json: String) -> String {
        Hex.lowercase(SHA256.hash(data: Data(json.utf8)))
    }

    /// Queues everything buffered (in chunks of at most `batchSize`) and the pending checkpoints for writing, then
    /// waits for the write queued before them: one write runs while the provider goes on.
    private func queueWrites() async throws {
        let previous = lastWrite
        lastQueued = ContinuousClock.now
        while !buffer.isEmpty || !pendingCheckpoints.isEmpty {
            let chunk = Array(buffer.prefix(batchSize))
            buffer.removeFirst(chunk.count)
            // Checkpoints go with the last chunk: the records yielded before them are in it or queued ahead of it.
            let (checkpoints, pages) = buffer.isEmpty ? (pendingCheckpoints, pendingPages) : ([:], 0)
            if buffer.isEmpty { (pendingCheckpoints, pendingPages) = ([:], 0) }
            let before = lastWrite
            let (store, integrationID, eventPrefix, now) = (store, integrationID, provider.id, clock.now())
            // Unstructured so the write overlaps the provider's work; its value is always awaited (by the next
            // write, by `finish`, or by `settle`), so it never outlives the fetch.
            lastWrite = Task {
                try await before?.value
                let counts = try await store.write(
                    chunk, integrationID: integrationID, eventPrefix: eventPrefix, checkpoints: checkpoints, at: now)
                self.recordWritten(counts, pages: pages)
            }
        }
        buffered = [:]
        try await previous?.value
    }

    /// Counts a committed write: its records, and its checkpoints as pages.
    private func recordWritten(_ counts: [String: RecordCounts], pages: Int) {
        for (stream, streamCounts) in counts { summary.streams[stream, default: RecordCounts()] += streamCounts }
        summary.pages += pages
        onProgress(progress())
    }
}
