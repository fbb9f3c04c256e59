// Minimal SwiftUI chat on the Ember Swift package. Create an iOS App in Xcode, add the
// package (File > Add Package Dependencies > Add Local… > ios/), replace the app's
// sources with this file, and add a GGUF model to the app bundle as "model.gguf".
import Ember
import SwiftUI

@MainActor
final class ChatModel: ObservableObject {
    @Published var messages: [ChatMessage] = []
    @Published var status = "loading model…"
    private var session: Session?
    private var engine: Engine?
    private var task: Task<Void, Never>?

    init() {
        Task.detached(priority: .userInitiated) {
            do {
                guard let path = Bundle.main.path(forResource: "model", ofType: "gguf") else {
                    await MainActor.run { self.status = "add model.gguf to the app bundle" }
                    return
                }
                let engine = try Engine.load(path: path, config: EngineConfig(contextSize: 2048))
                let session = try engine.newSession()
                let info = engine.info()
                await MainActor.run {
                    self.engine = engine
                    self.session = session
                    self.status = "\(info.name ?? info.arch) · \(info.quant)"
                }
            } catch {
                await MainActor.run { self.status = "cannot load the model: \(error)" }
            }
        }
    }

    func send(_ text: String) {
        guard let session else { return }
        messages.append(ChatMessage(role: "user", content: text))
        let history = messages
        messages.append(ChatMessage(role: "assistant", content: ""))
        task = Task {
            var reply = ""
            do {
                for try await piece in session.chatStream(history, params: GenerateParams(maxTokens: 512)) {
                    reply += piece
                    messages[messages.count - 1] = ChatMessage(role: "assistant", content: reply)
                }
            } catch {
                status = "error: \(error)"
            }
        }
    }

    func stop() { task?.cancel() }  // ends the stream, which cancels the generation
}

struct ContentView: View {
    @StateObject private var model = ChatModel()
    @State private var input = ""

    var body: some View {
        VStack(alignment: .leading) {
            Text(model.status).font(.caption)
            List(Array(model.messages.enumerated()), id: \.offset) { _, m in
                Text("\(m.role): \(m.content)")
            }
            HStack {
                TextField("Message", text: $input).textFieldStyle(.roundedBorder)
                Button("Send") { model.send(input); input = "" }
                Button("Stop") { model.stop() }
            }
        }
        .padding()
    }
}

@main
struct EmberChatApp: App {
    var body: some Scene { WindowGroup { ContentView() } }
}
