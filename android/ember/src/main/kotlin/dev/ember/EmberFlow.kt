// Hand-written idiomatic Kotlin over the generated bindings (package uniffi.ember_ffi).
// Compiled and tested on the JVM by bindings/tests/kotlin; packaged in the Android AAR.
package dev.ember

import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.launch
import uniffi.ember_ffi.ChatMessage
import uniffi.ember_ffi.EmberException
import uniffi.ember_ffi.GenerateParams
import uniffi.ember_ffi.GenerationStats
import uniffi.ember_ffi.Session
import uniffi.ember_ffi.TokenSink

/**
 * The generated text of one generation as a cold [Flow] of pieces.
 *
 * Collecting starts the generation (on its own native thread, via the generated
 * `generateAsync`); the flow completes when it ends and fails with an
 * [EmberException] on error. Cancelling the collector (leaving a screen, `take(n)`,
 * `first()`) cancels the generation within one token. [onDone] receives the stats.
 */
fun Session.generateFlow(
    prompt: String,
    params: GenerateParams = GenerateParams(),
    onDone: (GenerationStats) -> Unit = {},
): Flow<String> = tokenFlow(this, onDone) { sink -> generateAsync(prompt, params, sink) }

/** [generateFlow] for a chat: `messages` is the whole conversation so far. */
fun Session.chatFlow(
    messages: List<ChatMessage>,
    params: GenerateParams = GenerateParams(),
    onDone: (GenerationStats) -> Unit = {},
): Flow<String> = tokenFlow(this, onDone) { sink -> chatAsync(messages, params, sink) }

/** Convenience: a chat message. */
fun userMessage(content: String) = ChatMessage(role = "user", content = content)
fun assistantMessage(content: String) = ChatMessage(role = "assistant", content = content)
fun systemMessage(content: String) = ChatMessage(role = "system", content = content)

private fun tokenFlow(
    session: Session,
    onDone: (GenerationStats) -> Unit,
    start: suspend (TokenSink) -> GenerationStats,
): Flow<String> = callbackFlow {
    val sink = object : TokenSink {
        // Called on the generation thread: blocks while the collector is slow
        // (back-pressure); false once the flow is cancelled, which stops generation.
        override fun onToken(text: String): Boolean = trySendBlocking(text).isSuccess
        override fun onDone(stats: GenerationStats) = onDone(stats)
    }
    launch {
        try {
            start(sink)
            close()
        } catch (e: EmberException) {
            close(e)
        }
    }
    awaitClose { session.cancel() }
}.buffer(64)
