package dev.ember

import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import uniffi.ember_ffi.ChatMessage
import uniffi.ember_ffi.EmberException
import uniffi.ember_ffi.Engine
import uniffi.ember_ffi.EngineConfig
import java.io.File
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.TimeUnit

/**
 * The Kotlin SDK's remote engine (EngineConfig.remoteUrl / remoteApiKey / remoteModel /
 * route / remoteAllowHttp, and the route in GenerationStats) against a real `ember serve`
 * on loopback, started from the same target directory as the library (see docs/REMOTE.md).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class RemoteSdkTest {
    private val france = "The capital of France is"
    private val key = "sk-kotlin-remote-test-7"
    private lateinit var server: Process
    private lateinit var url: String

    private val modelPath: String by lazy {
        val home = System.getenv("EMBER_HOME") ?: (System.getProperty("user.home") + "/.cache/ember")
        File(home, "models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    }

    private fun freePort(): Int = ServerSocket(0).use { it.localPort }

    private fun greedy(n: Int) = uniffi.ember_ffi.GenerateParams(maxTokens = n.toUInt(), temperature = 0f)

    @BeforeAll fun startServer() {
        val exe = File(System.getProperty("jna.library.path"), "ember")
        check(exe.canExecute()) { "$exe is missing: cargo build --release -p ember-cli" }
        val port = freePort()
        server = ProcessBuilder(exe.path, "serve", "-m", modelPath, "--port", "$port", "--backend", "cpu", "-t", "2", "--api-key", key)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .redirectError(ProcessBuilder.Redirect.DISCARD)
            .start()
        val t0 = System.nanoTime()
        while (true) {
            try { Socket("127.0.0.1", port).close(); break } catch (e: java.io.IOException) {
                check(server.isAlive && System.nanoTime() - t0 < 120_000_000_000L) { "ember serve did not start" }
                Thread.sleep(200)
            }
        }
        url = "http://127.0.0.1:$port"
    }

    @AfterAll fun stopServer() {
        server.destroyForcibly()
        server.waitFor(10, TimeUnit.SECONDS)
    }

    @Test fun remoteEqualsLocalAndReportsItsRoute() {
        val local = Engine.load(modelPath, EngineConfig(threads = 2u)).use { e ->
            val c = EmberSdkTest.Collect()
            val st = e.newSession().generate(france, greedy(12), c)
            assertEquals("local" to "policy", st.route to st.routeReason)
            c.text
        }
        val config = EngineConfig(threads = 2u, remoteUrl = url, remoteApiKey = key, remoteModel = "SmolLM2-135M-Instruct.Q4_1", remoteAllowHttp = false)
        Engine.load(modelPath, config).use { e ->
            val c = EmberSdkTest.Collect()
            val st = e.newSession().generate(france, greedy(12), c)
            assertEquals("remote" to "policy", st.route to st.routeReason)
            assertEquals(local, c.text)
            assertTrue(c.pieces.size >= 6, "streamed: ${c.pieces}")
        }
        // Local first: a prompt that fits --ctx stays local, a longer one goes remote.
        val long = "Once upon a time there was a small robot who loved to read books. ".repeat(8) + france
        Engine.load(modelPath, EngineConfig(threads = 2u, contextSize = 64u, remoteUrl = url, remoteApiKey = key, route = "local-first")).use { e ->
            val fits = e.newSession().generate(france, greedy(4), EmberSdkTest.Collect())
            assertEquals("local" to "fits", fits.route to fits.routeReason)
            val long_ = e.newSession().generate(long, greedy(4), EmberSdkTest.Collect())
            assertEquals("remote" to "exceeds_context", long_.route to long_.routeReason)
        }
    }

    @Test fun remoteOnlyWithoutAModelFile() {
        Engine.remoteOnly(EngineConfig(remoteUrl = url, remoteApiKey = key)).use { e ->
            assertEquals("remote", e.info().arch)
            val s = e.newSession()
            val c = EmberSdkTest.Collect()
            val st = s.generate(france, greedy(12), c)
            assertEquals("remote" to "policy", st.route to st.routeReason)
            assertTrue(st.promptTokens > 0u, "the server's count")
            assertFalse(c.text.isEmpty())
            val reply = EmberSdkTest.Collect()
            s.chat(listOf(ChatMessage(role = "user", content = "What is 2+2?")), greedy(8), reply)
            assertTrue(reply.text.isNotEmpty())
        }
        // Local-first needs the local model it would run on.
        assertThrows<EmberException.InvalidParams> { Engine.remoteOnly(EngineConfig(remoteUrl = url, route = "local-first")) }
        assertThrows<EmberException.InvalidParams> { Engine.remoteOnly(EngineConfig()) }
        // A wrong key: a typed error that does not hold it.
        val wrong = "sk-wrong-kotlin-key-3"
        Engine.remoteOnly(EngineConfig(remoteUrl = url, remoteApiKey = wrong)).use { e ->
            val err = assertThrows<EmberException.Remote> { e.newSession().generate(france, greedy(4), EmberSdkTest.Collect()) }
            assertTrue("401" in err.message!! && wrong !in err.message!!, err.message)
        }
    }
}
