// Brazilian phone numbers as people type them, turned into the E.164 form BLiP's WhatsApp account lookup takes.
import Foundation

/// Normalises a Brazilian phone number to E.164 (`+55DDNNNNNNNNN`), or says why it cannot.
///
/// The rules, in order:
/// 1. Spaces, dashes, dots, slashes and parentheses are dropped; any other character that is not a digit (or a `+`
///    in front) makes the number unreadable.
/// 2. `+55…` and `0055…` carry the country code; `+` with any other country is refused (the plugin only sends to
///    Brazil). Without a prefix, 12 or 13 digits starting with `55` are read as country code + national number:
///    national numbers have 10 or 11 digits, so the length tells `55` the country from `55` the area code.
/// 3. A national number dialled with the trunk prefix `0` loses it, and with a carrier code (`0` + two digits +
///    area code + number, 13 or 14 digits) loses both.
/// 4. What is left must be a two-digit area code (DDD) from Anatel's list and a subscriber number of 8 or 9 digits.
/// 5. Nine digits: a mobile, which must start with 9. Eight digits starting with 6 to 9: a mobile written before
///    the ninth digit was added (2012–2016), which gets its 9. Eight digits starting with 2 to 5: a landline, kept.
///    Anything else is not a subscriber number.
public enum BlipPhone {
    /// The area codes (DDD) in use in Brazil.
    public static let areaCodes: Set<Int> = [
        11, 12, 13, 14, 15, 16, 17, 18, 19,
        21, 22, 24, 27, 28,
        31, 32, 33, 34, 35, 37, 38,
        41, 42, 43, 44, 45, 46, 47, 48, 49,
        51, 53, 54, 55,
        61, 62, 63, 64, 65, 66, 67, 68, 69,
        71, 73, 74, 75, 77, 79,
        81, 82, 83, 84, 85, 86, 87, 88, 89,
        91, 92, 93, 94, 95, 96, 97, 98, 99,
    ]

    /// Why a number could not be normalised. The text never repeats the number: it ends up in stored errors.
    public enum Problem: Error, Sendable, Equatable, CustomStringConvertible {
        case empty
        case unreadable
        case notBrazilian
        case wrongLength(digits: Int)
        case unknownAreaCode(Int)
        case notSubscriberNumber

        public var description: String {
            switch self {
            case .empty: "the phone number is empty"
            case .unreadable: "the phone number may only hold digits, a leading +, spaces, dashes, dots and parentheses"
            case .notBrazilian: "the phone number has a country code other than Brazil's (+55)"
            case .wrongLength(let digits):
                "the phone number has \(digits) digits; a Brazilian number has an area code and 8 or 9 digits"
            case .unknownAreaCode(let code): "the area code (DDD) \(code) does not exist in Brazil"
            case .notSubscriberNumber: "the number after the area code is neither a mobile nor a landline number"
            }
        }
    }

    /// `+55DDNNNNNNNNN` (mobiles) or `+55DDNNNNNNNN` (landlines).
    public static func normalize(_ text: String) -> Result<String, Problem> {
        var digits = ""
        var international = false
        for (offset, character) in text.trimmingCharacters(in: .whitespacesAndNewlines).enumerated() {
            if character.isASCII, character.isNumber {
                digits.append(character)
            } else if character == "+", offset == 0 {
                international = true
            } else if !" -.()/\u{00A0}".contains(character) {
                return .failure(.unreadable)
            }
        }
        guard !digits.isEmpty else { return .failure(.empty) }
        if !international, digits.hasPrefix("00") {
            digits.removeFirst(2)
            international = true
        }
        var national: Substring
        if international {
            guard digits.hasPrefix("55") else { return .failure(.notBrazilian) }
            national = digits.dropFirst(2)
        } else if digits.hasPrefix("0") {
            national = digits.dropFirst()
            // The trunk 0 was followed by a two-digit carrier code: 15 11 98765 4321.
            if national.count == 12 || national.count == 13 { national = national.dropFirst(2) }
        } else if (digits.count == 12 || digits.count == 13) && digits.hasPrefix("55") {
            national = digits.dropFirst(2)
        } else {
            national = Substring(digits)
        }
        guard national.count == 10 || national.count == 11 else { return .failure(.wrongLength(digits: national.count)) }
        guard let areaCode = Int(national.prefix(2)), areaCodes.contains(areaCode) else {
            return .failure(.unknownAreaCode(Int(national.prefix(2)) ?? 0))
        }
        var subscriber = String(national.dropFirst(2))
        switch (subscriber.count, subscriber.first) {
        case (9, "9"): break
        case (8, "6"), (8, "7"), (8, "8"), (8, "9"): subscriber = "9" + subscriber
        case (8, "2"), (8, "3"), (8, "4"), (8, "5"): break
        default: return .failure(.notSubscriberNumber)
        }
        return .success("+55\(areaCode)\(subscriber)")
    }
}
