// Splitting work into pieces of a bounded size (multi-row statements have a limit on bound parameters).

extension Collection {
    /// Consecutive slices of at most `size` elements, in order.
    func chunks(of size: Int) -> [SubSequence] {
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
}
