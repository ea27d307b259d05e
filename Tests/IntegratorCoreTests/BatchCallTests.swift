// Shared calls: every caller gets its own output, and a streaming leader waits for company only while calls follow
// one another.
import IntegratorCore
import Synchronization
import Testing

@Suite("BatchCall")
struct BatchCallTests {
    /// The inputs of every call, in call order.
    final class Calls: Sendable {
        let batches = Mutex<[[Int]]>([])
        func record(_ inputs: [Int]) { batches.withLock { $0.append(inputs) } }
        var all: [[Int]] { batches.withLock { $0 } }
    }

    static func doubling(_ calls: Calls, gathering: BatchGathering) -> BatchCall<Int, Int> {
        BatchCall(maxBatch: 100, gathering: gathering) { inputs in
            calls.record(inputs)
            return inputs.map { $0 * 2 }
        }
    }

    @Test("concurrent callers each get the output of their own input, in fewer calls than callers")
    func outputsPerCaller() async throws {
        let calls = Calls()
        let batch = Self.doubling(calls, gathering: .burst)
        let outputs = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for input in 0..<200 { group.addTask { (input, try await batch.submit(input)) } }
            return try await group.reduce(into: [Int: Int]()) { $0[$1.0] = $1.1 }
        }
        #expect(outputs.count == 200)
        #expect(outputs.allSatisfy { $0.value == $0.key * 2 })
        #expect(calls.all.flatMap { $0 }.sorted() == Array(0..<200))
        #expect(calls.all.count < 200)
    }

    @Test("a streaming leader after a quiet spell calls at once, however long its window")
    func firstCallerDoesNotWait() async throws {
        let calls = Calls()
        let batch = Self.doubling(calls, gathering: .stream(window: .seconds(60), enough: 10, pause: .seconds(60)))
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try await batch.submit(1) == 2)
        #expect(clock.now - start < .seconds(10))
        #expect(calls.all == [[1]])
    }

    @Test("while calls follow one another, a leader waits until enough inputs came and calls them together")
    func waitsForEnough() async throws {
        let calls = Calls()
        let batch = Self.doubling(calls, gathering: .stream(window: .seconds(60), enough: 4, pause: .seconds(60)))
        _ = try await batch.submit(0)
        let clock = ContinuousClock()
        let start = clock.now
        // Whichever caller leads, it waits for the fourth (not for the minute), and none calls alone.
        let outputs = try await withThrowingTaskGroup(of: Int.self) { group in
            for input in 1...4 { group.addTask { try await batch.submit(input) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(clock.now - start < .seconds(10))
        #expect(outputs.sorted() == [2, 4, 6, 8])
        #expect(calls.all.count == 2)
        #expect(calls.all.last?.sorted() == [1, 2, 3, 4])
    }

    /// Calls once with 0, then times a lone call with `input` right after it: the output, the wait, every call's inputs.
    static func loneCallAfterAnother(_ gathering: BatchGathering, input: Int) async throws -> (Int, Duration, [[Int]]) {
        let calls = Calls()
        let batch = doubling(calls, gathering: gathering)
        _ = try await batch.submit(0)
        let clock = ContinuousClock()
        let start = clock.now
        let output = try await batch.submit(input)
        return (output, clock.now - start, calls.all)
    }

    @Test("a streaming leader calls with what it has once its window is over")
    func callsWhenWindowEnds() async throws {
        let window = Duration.milliseconds(100)
        let (output, waited, calls) = try await Self.loneCallAfterAnother(.stream(window: window, enough: 10, pause: window), input: 5)
        #expect(output == 10)
        #expect(waited >= window)
        #expect(calls == [[0], [5]])
    }

    @Test("a streaming leader stops waiting once no input came for a pause, long before its window is over")
    func callsWhenStreamPauses() async throws {
        let gathering = BatchGathering.stream(window: .seconds(60), enough: 10, pause: .milliseconds(50))
        let (output, waited, calls) = try await Self.loneCallAfterAnother(gathering, input: 7)
        #expect(output == 14)
        #expect(waited >= .milliseconds(50) && waited < .seconds(10))
        #expect(calls == [[0], [7]])
    }
}
