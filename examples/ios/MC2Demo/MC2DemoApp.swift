import SwiftUI

@main
struct MC2DemoApp: App {
    @StateObject private var model = AppModel()

    var body: some Scene {
        WindowGroup {
            ContentView()
                .environmentObject(model)
                .task { await model.start(arguments: ProcessInfo.processInfo.arguments) }
        }
    }
}
