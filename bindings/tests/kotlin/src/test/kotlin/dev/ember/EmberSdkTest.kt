package dev.ember

import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import uniffi.ember_ffi.ChatMessage
import uniffi.ember_ffi.EmberException
import uniffi.ember_ffi.Engine
import uniffi.ember_ffi.EngineConfig
import uniffi.ember_ffi.GenerateParams
import uniffi.ember_ffi.GenerationStats
import uniffi.ember_ffi.TokenSink
import uniffi.ember_ffi.Tool
import java.io.File
import java.nio.file.Path
import java.util.Collections
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread

/** The Kotlin SDK (generated bindings + Flow layer) against the real SmolLM2 model through JNA. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class EmberSdkTest {
    private val france = "The capital of France is"
    // llama.cpp's greedy reference (tests/fixtures/smollm2/logits.jsonl, stable_text).
    private val franceRef = " Paris.\n\nThe"
    private lateinit var engine: Engine

    private val modelPath: String by lazy {
        val home = System.getenv("EMBER_HOME") ?: (System.getProperty("user.home") + "/.cache/ember")
        val p = File(home, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
        check(p.exists()) { "$p is missing: run scripts/fetch-models.sh" }
        p.path
    }

    class Collect(private val stopAfter: Int? = null, private val hook: ((Collect) -> Unit)? = null) : TokenSink {
        val pieces: MutableList<String> = Collections.synchronizedList(mutableListOf())
        @Volatile var done: GenerationStats? = null
        val text get() = pieces.joinToString("")
        override fun onToken(text: String): Boolean {
            pieces.add(text)
            hook?.invoke(this)
            return stopAfter == null || pieces.size < stopAfter
        }
        override fun onDone(stats: GenerationStats) { done = stats }
    }

    private fun greedy(n: Int) = GenerateParams(maxTokens = n.toUInt(), temperature = 0f)

    @BeforeAll fun load() { engine = Engine.load(modelPath, EngineConfig(threads = 2u)) }
    @AfterAll fun close() { engine.close() }

    @Test fun defaultsAndInfo() {
        val p = GenerateParams()
        assertTrue(p.maxTokens > 0u && p.temperature > 0f && p.stop.isEmpty())
        val info = engine.info()
        assertEquals("llama", info.arch)
        assertEquals("Q4_1", info.quant)
        assertEquals(8192u, info.context)
        assertTrue(info.hasChatTemplate)
        assertTrue(info.params in 100_000_000uL..200_000_000uL)
    }

    @Test fun streamingGenerateMatchesLlamaCpp() {
        engine.newSession().use { s ->
            val sink = Collect()
            val stats = s.generate(france, greedy(16), sink)
            assertTrue(sink.text.startsWith(franceRef), sink.text)
            assertTrue(sink.pieces.size > 3)
            assertEquals(stats, sink.done)
            assertEquals(5u, stats.promptTokens)
            assertEquals(16u, stats.generatedTokens)
            assertEquals("length", stats.stopReason)
            assertTrue(stats.tokensPerSecond > 0)
        }
    }

    @Test fun flowOfTokens() = runBlocking {
        engine.newSession().use { s ->
            var stats: GenerationStats? = null
            val text = s.generateFlow(france, greedy(16)) { stats = it }.toList().joinToString("")
            assertTrue(text.startsWith(franceRef), text)
            assertEquals("length", stats?.stopReason)
            // Cancelling the collector cancels the generation.
            val firstTwo = s.generateFlow(france, greedy(200)).take(2).toList()
            assertEquals(2, firstTwo.size)
        }
    }

    @Test fun chatAndChatFlow() = runBlocking {
        // The GGUF's template (SmolLM2: ChatML) rendered by chat() == the same prompt written by hand.
        val system = "You are a helpful assistant."
        val msgs = listOf(systemMessage(system), userMessage("What is 2+2?"))
        val byHand = "<|im_start|>system\n$system<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        engine.newSession().use { s ->
            val sink = Collect()
            val ref = Collect()
            val stats = s.chat(msgs, greedy(24), sink)
            val refStats = engine.newSession().use { it.generate(byHand, greedy(24), ref) }
            assertEquals(ref.text, sink.text)
            assertTrue(sink.text.isNotBlank())
            assertEquals(refStats.promptTokens, stats.promptTokens)
            assertTrue(stats.stopReason == "eog" || stats.stopReason == "length")
            var stats2: GenerationStats? = null
            val again = s.chatFlow(msgs + assistantMessage(sink.text) + userMessage("And 3+3?"), greedy(24)) { stats2 = it }
                .toList().joinToString("")
            assertTrue(again.isNotBlank())
            assertTrue(stats2!!.promptTokens < stats.promptTokens) // previous turns' KV reused
        }
    }

    @Test fun onTokenFalseStopsEarly() {
        engine.newSession().use { s ->
            val sink = Collect(stopAfter = 3)
            val stats = s.generate(france, greedy(64), sink)
            assertEquals(3, sink.pieces.size)
            assertEquals("cancelled", stats.stopReason)
        }
    }

    @Test fun cancelFromAnotherThread() {
        engine.newSession().use { s ->
            val first = CountDownLatch(1)
            var atCancel = -1
            val sink = Collect(hook = { c -> if (c.pieces.size == 1) { first.countDown(); Thread.sleep(200) } })
            val t = thread {
                assertTrue(first.await(30, TimeUnit.SECONDS))
                atCancel = sink.pieces.size
                s.cancel()
            }
            val stats = s.generate("Once upon a time, in a small village,", greedy(200), sink)
            t.join()
            assertEquals("cancelled", stats.stopReason)
            assertTrue(sink.pieces.size <= atCancel + 1, "${sink.pieces.size} pieces, cancelled at $atCancel")
        }
    }

    @Test fun twoSessionsOnTwoThreads() {
        val results = Collections.synchronizedMap(mutableMapOf<Int, String>())
        val threads = (0 until 2).map { i ->
            thread {
                engine.newSession().use { s ->
                    val sink = Collect()
                    s.generate(france, greedy(12), sink)
                    results[i] = sink.text
                }
            }
        }
        threads.forEach { it.join() }
        assertEquals(2, results.size)
        assertEquals(results[0], results[1])
        assertTrue(results[0]!!.startsWith(franceRef))
    }

    @Test fun resetAndAsync() = runBlocking {
        engine.newSession().use { s ->
            val a = Collect()
            s.generateAsync(france, greedy(6), a)
            assertTrue(s.contextTokens() > 0u)
            s.reset()
            assertEquals(0u, s.contextTokens())
            val b = Collect()
            s.generate(france, greedy(6), b)
            assertEquals(a.text, b.text)
        }
    }

    @Test fun badModelPath() {
        val e = assertThrows<EmberException.Io> { Engine.load("/nonexistent/model.gguf", EngineConfig()) }
        assertTrue(e.message!!.contains("model.gguf"), e.message)
    }

    @Test fun corruptFile(@TempDir dir: Path) {
        val bad = dir.resolve("garbage.gguf").toFile()
        bad.writeBytes("not a gguf file".repeat(100).toByteArray())
        val e = assertThrows<EmberException.InvalidModel> { Engine.load(bad.path, EngineConfig()) }
        assertTrue(e.message!!.contains("magic"), e.message)
        val trunc = dir.resolve("truncated.gguf").toFile()
        trunc.writeBytes(File(modelPath).inputStream().use { it.readNBytes(2_000_000) })
        assertThrows<EmberException.InvalidModel> { Engine.load(trunc.path, EngineConfig()) }
    }

    // A user record: typed fields, an enum, integer bounds (string bounded so greedy decoding ends).
    private val personSchema = """{"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "active": {"type": "boolean"}},
        "required": ["name", "age", "role", "active"], "additionalProperties": false}"""

    @Test fun jsonSchemaOutput() = runBlocking {
        val params = GenerateParams(maxTokens = 120u, temperature = 0f, jsonSchema = personSchema)
        val msgs = listOf(userMessage("Describe a user of a web site as JSON."))
        engine.newSession().use { s ->
            val sink = Collect()
            val stats = s.chat(msgs, params, sink)
            assertEquals("eog", stats.stopReason, sink.text)
            // No JSON library on this classpath: check the shape with a pattern that spells out the schema.
            val shape = Regex(
                """\{"name": "(?:[^"\\]|\\.)*", "age": (\d{1,3}), "role": "(admin|user|guest)", "active": (true|false)\}""",
            )
            val m = shape.matchEntire(sink.text)
            assertTrue(m != null, sink.text)
            assertTrue(m!!.groupValues[1].toInt() in 0..120, sink.text)
            // The Flow streams the same text.
            val flowed = engine.newSession().use { it.chatFlow(msgs, params).toList().joinToString("") }
            assertEquals(sink.text, flowed)
        }
    }

    @Test fun invalidConstraints() {
        engine.newSession().use { s ->
            val sink = Collect()
            val e = assertThrows<EmberException.InvalidConstraint> {
                s.generate(france, GenerateParams(grammar = "root ::= missing\n"), sink)
            }
            assertTrue(e.message!!.contains("missing"), e.message)
            assertTrue(sink.pieces.isEmpty())
            assertThrows<EmberException.InvalidConstraint> { s.generate(france, GenerateParams(jsonSchema = "{not json"), sink) }
            assertThrows<EmberException.InvalidParams> { s.generate(france, GenerateParams(jsonObject = true, regex = "a+"), sink) }
            assertEquals(0u, s.contextTokens())
        }
    }

    @Test fun invalidParams() {
        engine.newSession().use { s ->
            assertThrows<EmberException.InvalidParams> { s.generate(france, GenerateParams(topP = 2f), Collect()) }
        }
    }

    @Test fun requiredToolCall() {
        val weather = Tool(
            name = "get_weather",
            description = "Get the current weather in a city",
            parametersJson = """{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}""",
        )
        val params = GenerateParams(maxTokens = 60u, temperature = 0f, tools = listOf(weather), toolChoice = "required")
        engine.newSession().use { s ->
            val sink = Collect()
            val stats = s.chat(listOf(userMessage("What is the weather like in Paris?")), params, sink)
            assertEquals("tool_calls", stats.stopReason, sink.text)
            assertEquals(1, stats.toolCalls.size)
            assertEquals("get_weather", stats.toolCalls[0].name)
            assertTrue(Regex("""\{\s*"city"\s*:\s*"(?:[^"\\]|\\.)*"\s*\}""").matches(stats.toolCalls[0].argumentsJson), stats.toolCalls[0].argumentsJson)
            assertThrows<EmberException.InvalidParams> {
                s.chat(listOf(userMessage("hi")), GenerateParams(toolChoice = "required"), sink)
            }
        }
    }
}
