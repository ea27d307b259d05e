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
    /// When the flush timer is due: at `flushAt`, or before it when the timer fired before a message moved the deadline
    /// (that fire's flush re-arms it). `nil` when the timer must be set to `flushAt`: the buffer is new, or its
    /// deadline came sooner than the timer.
    var timerDue: Date?
}

struct ChatBufferStore: Sendable {
    let secrets: SecretBox

    /// What a message's sealed fields are bound to, so an envelope copied onto another row does not open.
    private static func binding(_ userKey: String, _ bufferID: String, _ seq: Int) -> String {
        "chat-buffer:\(bufferID):\(seq):\(userKey)"
    }

    // MARK: Buffers and messages

    /// Opens the user's buffer or adds to it, inside the caller's transaction, and returns it with the new message's
    /// number (`lastSeq`). The row stays locked until the caller commits, so the user's other messages and its flush
    /// wait: numbers follow commit order, and a flush never sees half a message. `timer_due` becomes NULL when the
    /// buffer is new or its deadline came sooner than the timer: the caller then sets the timer (``timerSet(_:dueAt:_:)``).
    /// - Parameters:
    ///   - deadline: now plus the message's ttl; the stored deadline becomes it, or the buffer's cap if that is sooner.
    ///   - cap: now plus max_wait; stored only when this message opens the buffer.
    func open(userKey: String, newBufferID: String, at now: Date, deadline: Date, cap: Date, _ sql: any SQLDatabase) async throws -> ChatBuffer {
        let newFlush: SQLQueryString =
            "CASE WHEN excluded.flush_at < chat_buffer_users.cap_at THEN excluded.flush_at ELSE chat_buffer_users.cap_at END"
        let row = try await sql.raw(
            """
            INSERT INTO chat_buffer_users (user_key, buffer_id, last_seq, first_at, cap_at, flush_at, timer_due, updated_at)
            VALUES (\(bind: userKey), \(bind: newBufferID), 1, \(bind: now), \(bind: cap), \(bind: min(deadline, cap)),
                NULL, \(bind: now))
            ON CONFLICT (user_key) DO UPDATE SET last_seq = chat_buffer_users.last_seq + 1, flush_at = \(newFlush),
                timer_due = CASE WHEN \(newFlush) < chat_buffer_users.timer_due THEN NULL ELSE chat_buffer_users.timer_due END,
                updated_at = excluded.updated_at
            RETURNING user_key, buffer_id, last_seq, first_at, flush_at, timer_due
            """
        ).first()
        guard let row else { throw ChatBufferStoreError("the buffer's row was not returned") }
        return try Self.buffer(row)
    }

    /// Records that the buffer's timer is now due at `date`.
    func timerSet(_ buffer: ChatBuffer, dueAt date: Date, _ sql: any SQLDatabase) async throws {
        try await sql.raw(
            "UPDATE chat_buffer_users SET timer_due = \(bind: date) WHERE user_key = \(bind: buffer.userKey) AND buffer_id = \(bind: buffer.bufferID)"
        ).run()
    }

    /// Stores message number `seq` of the buffer, its fields sealed.
    func insert(_ message: ChatBufferMessage, into buffer: ChatBuffer, at now: Date, _ sql: any SQLDatabase) async throws {
        let sealed = try secrets.seal(message.fields, boundTo: Self.binding(buffer.userKey, buffer.bufferID, buffer.lastSeq))
        try await sql.raw(
            """
            INSERT INTO chat_buffer_messages (user_key, seq, fields, received_at)
            VALUES (\(bind: buffer.userKey), \(bind: buffer.lastSeq), \(bind: sealed), \(bind: now))
            """
        ).run()
    }

    /// The user's open buffer; `locking` holds its row until the transaction ends (PostgreSQL; SQLite has one writer).
    func buffer(userKey: String, locking: Bool = false, _ sql: any SQLDatabase) async throws -> ChatBuffer? {
        let lock: SQLQueryString = locking && sql.dialect.name == "postgresql" ? " FOR UPDATE" : ""
        return try await sql.raw(
            "SELECT user_key, buffer_id, last_seq, first_at, flush_at, timer_due FROM chat_buffer_users WHERE user_key = \(bind: userKey)\(lock)"
        ).first().map(Self.buffer)
    }

    /// The buffer's messages, each one's fields as sent, in arrival order.
    func messages(of buffer: ChatBuffer, _ sql: any SQLDatabase) async throws -> [[String: JSONValue]] {
        let rows = try await sql.raw(
            """
            SELECT seq, fields FROM chat_buffer_messages
            WHERE user_key = \(bind: buffer.userKey) AND seq <= \(bind: buffer.lastSeq) ORDER BY seq
            """
        ).all()
        return try rows.map { row in
            let seq = try row.decode(column: "seq", as: Int.self)
            let sealed = try row.decode(column: "fields", as: String.self)
            return try secrets.open(sealed, boundTo: Self.binding(buffer.userKey, buffer.bufferID, seq))
        }
    }

    /// Removes the buffer and exactly the messages it held.
    func delete(_ buffer: ChatBuffer, _ sql: any SQLDatabase) async throws {
        try await sql.raw(
            "DELETE FROM chat_buffer_messages WHERE user_key = \(bind: buffer.userKey) AND seq <= \(bind: buffer.lastSeq)"
        ).run()
        try await sql.raw(
            "DELETE FROM chat_buffer_users WHERE user_key = \(bind: buffer.userKey) AND buffer_id = \(bind: buffer.bufferID)"
        ).run()
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
