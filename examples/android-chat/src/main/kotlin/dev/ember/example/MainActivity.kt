package dev.ember.example

import android.app.Application
import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateListOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import androidx.lifecycle.viewmodel.compose.viewModel
import dev.ember.assistantMessage
import dev.ember.chatFlow
import dev.ember.userMessage
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import uniffi.ember_ffi.ChatMessage
import uniffi.ember_ffi.EmberException
import uniffi.ember_ffi.Engine
import uniffi.ember_ffi.EngineConfig
import uniffi.ember_ffi.GenerateParams
import uniffi.ember_ffi.Session

class ChatViewModel(app: Application) : AndroidViewModel(app) {
    val messages = mutableStateListOf<ChatMessage>()
    var status by mutableStateOf("loading model…")
    private var engine: Engine? = null
    private var session: Session? = null
    private var job: Job? = null

    init {
        viewModelScope.launch {
            try {
                engine = withContext(Dispatchers.IO) {
                    // Memory-maps the uncompressed asset in place (no copy).
                    app.assets.openFd("model.gguf").use { afd ->
                        Engine.loadFromFd(afd.parcelFileDescriptor.fd, afd.startOffset.toULong(),
                            afd.length.toULong(), EngineConfig(contextSize = 2048u))
                    }
                }
                session = engine!!.newSession()
                status = engine!!.info().let { "${it.name ?: it.arch} · ${it.quant}" }
            } catch (e: EmberException) {
                status = "cannot load the model: ${e.message}"
            }
        }
    }

    fun send(text: String) {
        val s = session ?: return
        messages += userMessage(text)
        val history = messages.toList()
        messages += assistantMessage("")
        job = viewModelScope.launch {
            var reply = ""
            try {
                s.chatFlow(history, GenerateParams(maxTokens = 512u)) { stats ->
                    status = "%.1f tok/s · %s".format(stats.tokensPerSecond, stats.stopReason)
                }.collect { piece ->
                    reply += piece
                    messages[messages.lastIndex] = assistantMessage(reply)
                }
            } catch (e: EmberException) {
                status = "error: ${e.message}"
            }
        }
    }

    fun stop() { job?.cancel() }  // cancels the flow, which cancels the generation

    override fun onCleared() {
        session?.close()
        engine?.close()
    }
}

class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent { MaterialTheme { ChatScreen() } }
    }
}

@Composable
fun ChatScreen(vm: ChatViewModel = viewModel()) {
    var input by remember { mutableStateOf("") }
    Column(Modifier.fillMaxSize().padding(12.dp)) {
        Text(vm.status, style = MaterialTheme.typography.labelSmall)
        LazyColumn(Modifier.weight(1f).fillMaxWidth()) {
            items(vm.messages) { m -> Text("${m.role}: ${m.content}", Modifier.padding(vertical = 4.dp)) }
        }
        Row {
            OutlinedTextField(input, { input = it }, Modifier.weight(1f), placeholder = { Text("Message") })
            Button(onClick = { vm.send(input); input = "" }, Modifier.padding(start = 8.dp)) { Text("Send") }
            Button(onClick = { vm.stop() }, Modifier.padding(start = 8.dp)) { Text("Stop") }
        }
    }
}
