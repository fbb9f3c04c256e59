// Hand-written idiomatic Swift over the generated bindings (Generated/ember_ffi.swift).
// Not compiled on our Linux CI (no Swift toolchain); see docs/MOBILE.md.
import Foundation

public extension Session {
    /// The generated text of one generation as an `AsyncThrowingStream` of pieces.
    /// The generation runs on its own native thread; the stream finishes when it ends and
    /// throws an `EmberError` on failure. Breaking out of the `for try await` loop or
    /// cancelling the consuming Task cancels the generation within one token.
    func generateStream(
        _ prompt: String,
        params: GenerateParams = GenerateParams(),
        onDone: @escaping @Sendable (GenerationStats) -> Void = { _ in }
    ) -> AsyncThrowingStream<String, Error> {
        tokenStream(session: self, onDone: onDone) { sink in
            try await self.generateAsync(prompt: prompt, params: params, sink: sink)
        }
    }

    /// `generateStream` for a chat: `messages` is the whole conversation so far.
    func chatStream(
        _ messages: [ChatMessage],
        params: GenerateParams = GenerateParams(),
        onDone: @escaping @Sendable (GenerationStats) -> Void = { _ in }
    ) -> AsyncThrowingStream<String, Error> {
        tokenStream(session: self, onDone: onDone) { sink in
            try await self.chatAsync(messages: messages, params: params, sink: sink)
        }
    }
}

private final class StreamSink: TokenSink, @unchecked Sendable {
    private let continuation: AsyncThrowingStream<String, Error>.Continuation
    private let done: @Sendable (GenerationStats) -> Void

    init(_ continuation: AsyncThrowingStream<String, Error>.Continuation,
         done: @escaping @Sendable (GenerationStats) -> Void) {
        self.continuation = continuation
        self.done = done
    }

    // Called on the generation thread; false (consumer gone) stops the generation.
    func onToken(text: String) -> Bool {
        if case .terminated = continuation.yield(text) { return false }
        return true
    }

    func onDone(stats: GenerationStats) { done(stats) }
}

private func tokenStream(
    session: Session,
    onDone: @escaping @Sendable (GenerationStats) -> Void,
    start: @escaping @Sendable (TokenSink) async throws -> GenerationStats
) -> AsyncThrowingStream<String, Error> {
    AsyncThrowingStream(bufferingPolicy: .unbounded) { continuation in
        let sink = StreamSink(continuation, done: onDone)
        let task = Task {
            do {
                _ = try await start(sink)
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { termination in
            if case .cancelled = termination {
                session.cancel()
                task.cancel()
            }
        }
    }
}
