// The async semaphore: never more holders than permits, and waiters served in arrival order.
import IntegratorCore
import Synchronization
import Testing

@Suite("AsyncGate")
struct AsyncGateTests {
    final class Counter: Sendable {
        let state = Mutex((current: 0, highest: 0, order: [Int]()))
        func enter(_ id: Int) { state.withLock { $0.current += 1; $0.highest = max($0.highest, $0.current); $0.order.append(id) } }
        func leave() { state.withLock { $0.current -= 1 } }
    }

    @Test("never more holders than permits at once, and every one of 200 callers gets a turn", arguments: [1, 3])
    func boundsHolders(permits: Int) async throws {
        let gate = AsyncGate(permits: permits)
        let counter = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in 0..<200 {
                group.addTask {
                    try await gate.withPermit {
                        counter.enter(id)
                        await Task.yield()
                        counter.leave()
                    }
                }
            }
            try await group.waitForAll()
        }
        let state = counter.state.withLock { $0 }
        #expect(state.highest <= permits && state.highest >= 1)
        #expect(state.order.count == 200 && Set(state.order).count == 200)
        #expect(state.current == 0)
    }

    @Test("a holder that throws gives its permit back")
    func throwingHolderReleases() async throws {
        struct Failure: Error {}
        let gate = AsyncGate(permits: 1)
        await #expect(throws: Failure.self) { try await gate.withPermit { throw Failure() } }
        let value = try await gate.withPermit { 42 }
        #expect(value == 42)
    }

    @Test("a permit that comes after the caller's deadline is handed on, and the caller gets its error")
    func deadlinePassedHandsPermitOn() async throws {
        struct TimedOut: Error {}
        let gate = AsyncGate(permits: 1)
        let (release, releaser) = AsyncStream<Void>.makeStream()
        let (held, holding) = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await gate.withPermit {
                holding.yield()
                for await _ in release { break }
            }
        }
        for await _ in held { break }
        let ran = Mutex(false)
        let late = Task {
            try await gate.withPermit(unlessLaterThan: .now + .milliseconds(20), orThrow: TimedOut()) { ran.withLock { $0 = true } }
        }
        try await Task.sleep(for: .milliseconds(60))
        releaser.yield()
        await #expect(throws: TimedOut.self) { try await late.value }
        #expect(ran.withLock { $0 } == false)
        // The permit went on: a caller without a deadline gets it.
        try await holder.value
        #expect(try await gate.withPermit { 7 } == 7)
    }
}
