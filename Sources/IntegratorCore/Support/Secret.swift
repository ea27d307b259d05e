// A string that must never be printed: secret credential fields, tokens and passwords travel in this wrapper.

/// Holds a sensitive string. Every textual rendering — `description`, string interpolation, `dump`,
/// logging metadata — shows a mask; the value is read only through ``reveal()`` where it is actually used.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// What every rendering of a secret shows.
    public static let mask = "********"

    private let value: String

    public init(_ value: String) { self.value = value }

    /// The secret itself, for the one place that needs it (an HTTP header, a hash, an encryption).
    public func reveal() -> String { value }

    public var description: String { Self.mask }
    public var debugDescription: String { Self.mask }
    public var customMirror: Mirror { Mirror(self, children: []) }
}
