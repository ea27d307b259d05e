// Shaping batches for multi-row statements: pieces of a bounded size (statements have a limit on bound parameters),
// and one entry per row (a statement may not touch a row twice).

extension Collection {
    /// Consecutive slices of at most `size` elements, in order.
    public func chunks(of size: Int) -> [SubSequence] {
        precondition(size > 0, "chunk size must be positive")
        var slices: [SubSequence] = []
        var start = startIndex
        while start != endIndex {
            let end = index(start, offsetBy: size, limitedBy: endIndex) ?? endIndex
            slices.append(self[start..<end])
            start = end
        }
        return slices
    }

    /// The elements whose key no later element repeats, in their order: of entries for the same row, the last wins.
    public func lastOccurrences<Key: Hashable>(by key: (Element) -> Key) -> [Element] {
        var latest: [Key: Int] = [:]
        for (offset, element) in enumerated() { latest[key(element)] = offset }
        return enumerated().filter { latest[key($0.element)] == $0.offset }.map(\.element)
    }
}
