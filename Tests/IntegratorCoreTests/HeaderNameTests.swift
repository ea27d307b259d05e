// Header names match without regard to ASCII case, and only whole names match.
import Foundation
import Testing

@testable import IntegratorCore

@Suite("Header names")
struct HeaderNameTests {
    @Test("a header is found whatever the case of its name, and a longer or shorter name is another header")
    func lookups() {
        var request = OutboundRequest(method: "POST", "http://127.0.0.1/hook", headers: [("Retry-After", "5"), ("X-Tenant-ID", "a")])
        #expect(request.header("retry-after") == "5")
        #expect(request.header("RETRY-AFTER") == "5")
        #expect(request.header("x-tenant-id") == "a")
        #expect(request.header("retry-afte") == nil)
        #expect(request.header("retry-after2") == nil)
        #expect(request.header("") == nil)
        request.setHeader("x-TENANT-id", "b")
        #expect(request.headers.filter { $0.name.lowercased() == "x-tenant-id" }.map(\.value) == ["b"])
        let response = OutboundResponse(status: 429, headers: [("retry-AFTER", "7")])
        #expect(response.header("Retry-After") == "7")
    }

    @Test("letters outside ASCII are compared as they are, and the bytes around A–Z are not folded")
    func onlyASCIILettersFold() {
        #expect(HeaderName.matches("Ä-Header", "Ä-header"))
        #expect(!HeaderName.matches("ä", "Ä"))
        // '@' (0x40) and '[' (0x5B) sit next to 'A' and 'Z'; '`' and '{' are 32 above them.
        #expect(!HeaderName.matches("@", "`"))
        #expect(!HeaderName.matches("[", "{"))
    }
}
