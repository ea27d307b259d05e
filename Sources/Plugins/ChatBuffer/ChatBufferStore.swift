// Every SQL statement of the chat buffer: users' open buffers, their sealed messages, and the settings.
import Foundation
import IntegratorCore
import SQLKit

/// A user's open buffer as stored.
struct ChatBuffer: Sendable, Equatable {
    var userKey: String
    /// Names this buffer from its first message to its flush; the flush's webhook event id is made of it.
    var bufferID: String
    /// How many messages the buffer holds; they are numbered 1 to `lastSeq` in arrival order.
    var lastSeq: Int
    var firstAt: Date
    var flushAt: Date
    /// When the flush timer is due, as this row records it: `flushAt` once a message has set or moved the timer in its
    /// transaction (a timer that fired before a message moved the deadline is re-armed by that fire's flush). `nil` when
    /// the deadline came sooner than the timer, or the row did not know when its timer is due: the caller then sets the
    /// timer (``ChatBufferStore/timerSet(_:dueAt:_:)``).
    var timerDue: Date?
}

struct ChatBufferStore: Sendable {
    let secrets: SecretBox

    /// What a message's sealed fields are bound to, so an envelope copied onto another row does not open.
    private static func binding(_ userKey: String, _ bufferID: String, _ seq: Int) -> String {
        "chat-buffer:\(bufferID):\(seq):\(userKey)"
    }

    // MARK: Buffers and messages

    /// What messages that arrive together bring to one user's buffer.
    struct Arrival: Sendable {
        var userKey: String
        /// The buffer's id if these messages open it.
        var newBufferID: String
        /// How many of the messages are the user's.
        var count: Int
        /// Now plus the ttl of the user's last message: the stored deadline becomes it, or the buffer's cap if that is
        /// sooner.
        var deadline: Date
        /// Now plus the max_wait of the user's first message; stored only when these messages open the buffer.
        var cap: Date
    }

    /// Opens each user's buffer or adds to it, inside the caller's transaction, in one statement per 500 users, and
    /// returns the buffers by user with their new `lastSeq` (the user's messages take the numbers up to it). The rows
    /// stay locked until the caller commits, so the users' other messages and their flushes wait: numbers follow commit
    /// order, and a flush never sees half a message. Rows are written in user order, so that two such transactions lock
    /// shared users in the same order and never wait for each other in a circle.
    ///
    /// `timer_due` becomes the new deadline, which the caller's transaction then gives the timer (a new buffer's, or
    /// moved later), or NULL when the deadline came sooner than the timer or the timer's due time was unknown (a row
    /// from before the column): the caller then sets the timer and records it (``timerSet(_:dueAt:_:)``). Recording the
    /// deadline here saves a statement per message.
    func open(_ arrivals: [Arrival], at now: Date, _ sql: any SQLDatabase) async throws -> [String: ChatBuffer] {
        let newFlush: SQLQueryString =
            "CASE WHEN excluded.flush_at < chat_buffer_users.cap_at THEN excluded.flush_at ELSE chat_buffer_users.cap_at END"
        var buffers: [String: ChatBuffer] = [:]
        buffers.reserveCapacity(arrivals.count)
        for chunk in arrivals.sorted(by: { $0.userKey < $1.userKey }).chunks(of: 500) {
            let rows = chunk.map { arrival -> SQLQueryString in
                let flushAt = min(arrival.deadline, arrival.cap)
                return """
                    (\(bind: arrival.userKey), \(bind: arrival.newBufferID), \(bind: arrival.count), \(bind: now), \(bind: arrival.cap),
                     \(bind: flushAt), \(bind: flushAt), \(bind: now))
                    """
            }
            let returned = try await sql.raw(
                """
                INSERT INTO chat_buffer_users (user_key, buffer_id, last_seq, first_at, cap_at, flush_at, timer_due, updated_at)
                VALUES \(rows.joined(separator: ", "))
                ON CONFLICT (user_key) DO UPDATE SET last_seq = chat_buffer_users.last_seq + excluded.last_seq, flush_at = \(newFlush),
                    timer_due = CASE WHEN chat_buffer_users.timer_due IS NULL OR \(newFlush) < chat_buffer_users.timer_due THEN NULL
                        ELSE \(newFlush) END,
                    updated_at = excluded.updated_at
                RETURNING user_key, buffer_id, last_seq, first_at, flush_at, timer_due
                """
            ).all()
            for row in returned {
                let buffer = try Self.buffer(row)
                buffers[buffer.userKey] = buffer
            }
        }
        guard buffers.count == Set(arrivals.map(\.userKey)).count else { throw ChatBufferStoreError("a buffer's row was not returned") }
        return buffers
    }

    /// Records that the buffer's timer is now due at `date`.
    func timerSet(_ buffer: ChatBuffer, dueAt date: Date, _ sql: any SQLDatabase) async throws {
        try await sql.raw(
            "UPDATE chat_buffer_users SET timer_due = \(bind: date) WHERE user_key = \(bind: buffer.userKey) AND buffer_id = \(bind: buffer.bufferID)"
        ).run()
    }

    /// Stores each message as number `seq` of its buffer, its fields sealed, in one statement per 500 messages.
    func insert(_ messages: [(message: ChatBufferMessage, buffer: ChatBuffer, seq: Int)], at now: Date, _ sql: any SQLDatabase) async throws {
        for chunk in messages.chunks(of: 500) {
            let rows = try chunk.map { placed -> SQLQueryString in
                let sealed = try secrets.seal(placed.message.fields, boundTo: Self.binding(placed.buffer.userKey, placed.buffer.bufferID, placed.seq))
                return "(\(bind: placed.buffer.userKey), \(bind: placed.seq), \(bind: sealed), \(bind: now))"
            }
            try await sql.raw(
                "INSERT INTO chat_buffer_messages (user_key, seq, fields, received_at) VALUES \(rows.joined(separator: ", "))"
            ).run()
        }
    }

    /// The user's open buffer.
    func buffer(userKey: String, _ sql: any SQLDatabase) async throws -> ChatBuffer? {
        try await sql.raw(
            "SELECT user_key, buffer_id, last_seq, first_at, flush_at, timer_due FROM chat_buffer_users WHERE user_key = \(bind: userKey)"
        ).first().map(Self.buffer)
    }

    /// The users' open buffers, by user, their rows held until the transaction ends (PostgreSQL, locked in user order;
    /// SQLite has one writer), and the webhook URL set through the API: what flushes need before they take the
    /// messages.
    func buffersForFlush(userKeys: [String], _ sql: any SQLDatabase) async throws -> (buffers: [String: ChatBuffer], storedURL: String?) {
        let lock: SQLQueryString = sql.dialect.name == "postgresql" ? " FOR UPDATE" : ""
        var buffers: [String: ChatBuffer] = [:]
        var storedURL: String?
        for chunk in userKeys.sorted().chunks(of: 500) {
            for row in try await sql.raw(
                """
                SELECT user_key, buffer_id, last_seq, first_at, flush_at, timer_due,
                    (SELECT value FROM chat_buffer_settings WHERE name = \(bind: Self.webhookURLSetting)) AS webhook_url
                FROM chat_buffer_users WHERE user_key IN (\(binds: Array(chunk))) ORDER BY user_key\(lock)
                """
            ).all() {
                let buffer = try Self.buffer(row)
                buffers[buffer.userKey] = buffer
                storedURL = try row.decode(column: "webhook_url", as: String?.self)
            }
        }
        // With no buffer found there is nothing to flush, so no URL is needed.
        return (buffers, storedURL)
    }

    /// Removes the buffers and exactly the messages they held, and returns those messages (each one's fields as sent)
    /// by user in arrival order. The buffers' rows are locked already (``buffersForFlush(userKeys:_:)``), so a message
    /// committed before the lock is among them and one sent after it waits for the next buffer.
    func take(_ buffers: [ChatBuffer], _ sql: any SQLDatabase) async throws -> [String: [[String: JSONValue]]] {
        var sealed: [String: [(seq: Int, fields: String)]] = [:]
        if sql.dialect.name == "postgresql" {
            // One round trip for each 500 buffers and their messages: flushes run while users wait for their webhook.
            for chunk in buffers.chunks(of: 500) {
                let taken = chunk.map { buffer -> SQLQueryString in "(\(bind: buffer.userKey), \(bind: buffer.bufferID))" }
                let rows = try await sql.raw(
                    """
                    WITH buffers_removed AS (
                        DELETE FROM chat_buffer_users WHERE (user_key, buffer_id) IN (VALUES \(taken.joined(separator: ", ")))
                        RETURNING user_key, last_seq
                    )
                    DELETE FROM chat_buffer_messages AS message USING buffers_removed AS removed
                    WHERE message.user_key = removed.user_key AND message.seq <= removed.last_seq
                    RETURNING message.user_key, message.seq, message.fields
                    """
                ).all()
                for row in rows {
                    sealed[try row.decode(column: "user_key", as: String.self), default: []].append(
                        (try row.decode(column: "seq", as: Int.self), try row.decode(column: "fields", as: String.self)))
                }
            }
        } else {
            for buffer in buffers {
                let rows = try await sql.raw(
                    """
                    DELETE FROM chat_buffer_messages WHERE user_key = \(bind: buffer.userKey) AND seq <= \(bind: buffer.lastSeq)
                    RETURNING seq, fields
                    """
                ).all()
                try await sql.raw(
                    "DELETE FROM chat_buffer_users WHERE user_key = \(bind: buffer.userKey) AND buffer_id = \(bind: buffer.bufferID)"
                ).run()
                sealed[buffer.userKey] = try rows.map { row in
                    (try row.decode(column: "seq", as: Int.self), try row.decode(column: "fields", as: String.self))
                }
            }
        }
        var messages: [String: [[String: JSONValue]]] = [:]
        for buffer in buffers {
            messages[buffer.userKey] = try (sealed[buffer.userKey] ?? []).sorted { $0.seq < $1.seq }.map { message in
                try secrets.open(message.fields, boundTo: Self.binding(buffer.userKey, buffer.bufferID, message.seq))
            }
        }
        return messages
    }

    /// Moves a buffer's deadline and its timer's (a flush that must wait for a webhook URL).
    func postpone(_ buffer: ChatBuffer, to date: Date, _ sql: any SQLDatabase) async throws {
        try await sql.raw(
            """
            UPDATE chat_buffer_users SET flush_at = \(bind: date), timer_due = \(bind: date)
            WHERE user_key = \(bind: buffer.userKey) AND buffer_id = \(bind: buffer.bufferID)
            """
        ).run()
    }

    private static func buffer(_ row: any SQLRow) throws -> ChatBuffer {
        ChatBuffer(
            userKey: try row.decode(column: "user_key", as: String.self),
            bufferID: try row.decode(column: "buffer_id", as: String.self),
            lastSeq: try row.decode(column: "last_seq", as: Int.self),
            firstAt: try row.decode(column: "first_at", as: Date.self),
            flushAt: try row.decode(column: "flush_at", as: Date.self),
            timerDue: try row.decode(column: "timer_due", as: Date?.self))
    }

    // MARK: Settings

    static let webhookURLSetting = "webhook_url"

    func setting(_ name: String, _ sql: any SQLDatabase) async throws -> String? {
        try await sql.raw("SELECT value FROM chat_buffer_settings WHERE name = \(bind: name)").first()?
            .decode(column: "value", as: String.self)
    }

    /// Stores a setting, or removes it when `value` is nil.
    func setSetting(_ name: String, _ value: String?, at now: Date, _ sql: any SQLDatabase) async throws {
        guard let value else {
            try await sql.raw("DELETE FROM chat_buffer_settings WHERE name = \(bind: name)").run()
            return
        }
        try await sql.raw(
            """
            INSERT INTO chat_buffer_settings (name, value, updated_at) VALUES (\(bind: name), \(bind: value), \(bind: now))
            ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
            """
        ).run()
    }
}

/// A store statement did not behave as the schema promises.
struct ChatBufferStoreError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
