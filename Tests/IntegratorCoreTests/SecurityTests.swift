// Encryption at rest, key rotation, tokens and secrets that refuse to print.
import Foundation
import IntegratorCore
import Testing

@Suite("Secrets and tokens")
struct SecurityTests {
    func ring(_ keys: String...) throws -> SecretKeyRing {
        try SecretKeyRing(parsing: keys.joined(separator: ","), variable: "INTEGRATOR_SECRET_KEY")
    }

    @Test("sealed secrets open with the same key and row only")
    func sealAndOpen() throws {
        let box = SecretBox(keys: try ring(SecretKeyRing.generateEncodedKey()))
        let envelope = try box.seal(["token": "hunter2"], boundTo: "row-1")
        #expect(!envelope.contains("hunter2"))
        #expect(try box.open(envelope, boundTo: "row-1") == ["token": "hunter2"])
        #expect(throws: SecretBoxError.self) { try box.open(envelope, boundTo: "row-2") }
        let other = SecretBox(keys: try ring(SecretKeyRing.generateEncodedKey()))
        #expect(throws: SecretBoxError.self) { try other.open(envelope, boundTo: "row-1") }
    }

    @Test("after rotation old envelopes still open and are marked for re-sealing")
    func rotation() throws {
        let old = SecretKeyRing.generateEncodedKey()
        let new = SecretKeyRing.generateEncodedKey()
        let envelope = try SecretBox(keys: try ring(old)).seal(["k": "v"], boundTo: "r")
        let rotated = SecretBox(keys: try ring(new, old))
        #expect(try rotated.open(envelope, boundTo: "r") == ["k": "v"])
        #expect(rotated.needsRotation(envelope))
        #expect(!rotated.needsRotation(try rotated.seal(["k": "v"], boundTo: "r")))
    }

    @Test("secrets print as masks everywhere")
    func secretRendering() {
        let secret = Secret("hunter2")
        #expect("\(secret)" == "********")
        #expect(String(reflecting: secret) == "********")
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains("hunter2"))
        let values = CredentialValues(typeID: "t", publicValues: [:], secretValues: ["token": secret])
        #expect(!"\(values)".contains("hunter2"))
    }

    @Test("access tokens verify until they expire; refresh tokens are not access tokens")
    func jwt() async throws {
        let clock = ManualTimeSource(Date(timeIntervalSince1970: 1_800_000_000))
        let service = await TokenService(keyRing: try ring(SecretKeyRing.generateEncodedKey()), clock: clock)
        let user = User(id: Identifier.make(), username: "ana", role: .operator, createdAt: clock.now(), updatedAt: clock.now())
        let tokens = try await service.issue(for: user)
        #expect(await service.verify(tokens.accessToken)?.sub.value == user.id)
        #expect(await service.verify(tokens.refreshToken) == nil)
        #expect(await service.verify(tokens.refreshToken, refresh: true)?.sub.value == user.id)
        clock.advance(by: 901)
        #expect(await service.verify(tokens.accessToken) == nil)
        #expect(await service.verify(tokens.refreshToken, refresh: true) != nil)
        let otherService = await TokenService(keyRing: try ring(SecretKeyRing.generateEncodedKey()), clock: clock)
        #expect(await otherService.verify(try await otherService.issue(for: user).accessToken) != nil)
        #expect(await service.verify(try await otherService.issue(for: user).accessToken) == nil)
    }

    @Test("personal tokens are random, prefixed, and hashed stably")
    func personalTokens() {
        let first = TokenService.makePersonalToken()
        let second = TokenService.makePersonalToken()
        #expect(first != second)
        #expect(first.reveal().hasPrefix("itk_"))
        #expect(TokenService.hashPersonalToken(first) == TokenService.hashPersonalToken(Secret(first.reveal())))
        #expect(TokenService.constantTimeEquals(Secret("abc"), Secret("abc")))
        #expect(!TokenService.constantTimeEquals(Secret("abc"), Secret("abd")))
    }

    @Test("ids sort by creation time and cursors round-trip")
    func identifiers() {
        let earlier = Identifier.make(now: Date(timeIntervalSince1970: 1_000))
        let later = Identifier.make(now: Date(timeIntervalSince1970: 2_000))
        #expect(earlier < later)
        #expect(Identifier.isWellFormed(earlier))
        #expect(!Identifier.isWellFormed("x"))
        #expect(PageRequest.decodeCursor("zzz") == nil)
    }
}
