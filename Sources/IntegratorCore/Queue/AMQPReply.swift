// The answer to one call made to an AMQP connection's thread, and the errors such a call can end with.
import Foundation
import Synchronization

/// A broker-side failure the caller sees.
public struct AMQPError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The connection failed or is down; the same call may succeed once it is back.
        case connection
        /// RabbitMQ confirmed the message but no queue took it (it came back as `basic.return`).
        case unroutable
        /// The deadline passed before RabbitMQ answered (a memory or disk alarm blocks publishing, or the server is slow).
        case timeout
        /// RabbitMQ refused to declare a queue: it exists with other arguments.
        case declarationRefused
        /// RabbitMQ refused the message (`basic.nack`).
        case refused
        /// The connection was shut down.
        case shutDown
    }

    public var kind: Kind
    /// The queue the call was about, when there was one.
    public var queue: String?
    public var message: String
    public var description: String { message }

    public init(_ kind: Kind = .connection, queue: String? = nil, message: String) {
        self.kind = kind
        self.queue = queue
        self.message = message
    }
}

/// The answer to one call, settled exactly once by whichever comes first: the connection's thread (a reply, a
/// confirm, a failure), the thread noticing the call's deadline passed, or the caller's cancellation.
final class AMQPReply<Value: Sendable>: Sendable {
    private enum State {
        case pending
        case waiting(CheckedContinuation<Value, any Error>)
        /// The result, kept only when it came before the caller started waiting.
        case settled(Result<Value, any Error>?)
    }

    private let state = Mutex<State>(.pending)
    /// After this the call fails with ``AMQPError/Kind/timeout``; the connection's thread watches it.
    let deadline: ContinuousClock.Instant

    init(deadline: ContinuousClock.Instant) { self.deadline = deadline }

    /// True once answered, failed, timed out or cancelled: a call not yet sent is then never sent.
    var isSettled: Bool {
        state.withLock { state in
            if case .settled = state { return true }
            return false
        }
    }

    func settle(_ result: Result<Value, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            switch state {
            case .pending:
                state = .settled(result)
                return nil
            case .waiting(let continuation):
                state = .settled(nil)
                return continuation
            case .settled:
                return nil
            }
        }
        continuation?.resume(with: result)
    }

    func succeed(_ value: Value) { settle(.success(value)) }
    func fail(_ error: any Error) { settle(.failure(error)) }

    /// Calls `send` (which hands the call to the connection's thread) and waits for the answer. Cancelling the caller
    /// fails the call at once with `CancellationError`; if it was not sent yet, it never is.
    func wait(sending send: () -> Void) async throws -> Value {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let early = state.withLock { state -> Result<Value, any Error>? in
                    switch state {
                    case .pending:
                        state = .waiting(continuation)
                        return nil
                    case .settled(let result):
                        return result ?? .failure(CancellationError())
                    case .waiting:
                        preconditionFailure("an AMQP reply is awaited once")
                    }
                }
                if let early {
                    continuation.resume(with: early)
                } else {
                    send()
                }
            }
        } onCancel: {
            fail(CancellationError())
        }
    }
}
