// Idle workers wait for news of inserted messages instead of sleeping out their poll pause.
@testable import IntegratorCore
import Synchronization
import Testing

@Suite("Queue arrivals")
struct QueueArrivalsTests {
    @Test("a waiter is woken by news, long before its limit; news it has not seen yet ends its wait at once")
    func wokenByNews() async throws {
        let arrivals = QueueArrivals()
        let mark = arrivals.mark
        let waiter = Task { await arrivals.wait(after: mark, upTo: .seconds(600)) }
        // Whether the note comes before or after the waiter registers, it must see it.
        try await Task.sleep(for: .milliseconds(20))
        arrivals.note()
        #expect(await waiter.value, "woken by the note, not by its 600 s limit")
        #expect(await arrivals.wait(after: mark, upTo: .seconds(600)), "an old mark means news came since")
        #expect(arrivals.mark != mark)
    }

    @Test("every waiter wakes on one note")
    func everyWaiterWakes() async throws {
        let arrivals = QueueArrivals()
        let mark = arrivals.mark
        let waiters = (0..<8).map { _ in Task { await arrivals.wait(after: mark, upTo: .seconds(600)) } }
        try await Task.sleep(for: .milliseconds(20))
        arrivals.note()
        for waiter in waiters { #expect(await waiter.value) }
    }

    @Test("without news the wait ends at its limit, and a cancelled wait ends at once, both saying no news")
    func limitAndCancellation() async throws {
        let arrivals = QueueArrivals()
        #expect(await arrivals.wait(after: arrivals.mark, upTo: .milliseconds(10)) == false)
        let waiter = Task { await arrivals.wait(after: arrivals.mark, upTo: .seconds(600)) }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        #expect(await waiter.value == false)
        // A note after a cancelled wait finds no one waiting.
        arrivals.note()
    }
}
