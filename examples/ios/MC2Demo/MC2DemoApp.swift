import SwiftUI

@main
struct MC2DemoApp: App {
    @StateObject private var model: AppModel

    init() {
        let m = AppModel()
        _model = StateObject(wrappedValue: m)
        // BGTaskScheduler handlers must be registered before launch ends (Info.plist lists the identifier)
        BackgroundIndexing.register(m)
    }

    var body: some Scene {
        WindowGroup {
            ContentView()
                .environmentObject(model)
                .task { await model.start(arguments: ProcessInfo.processInfo.arguments) }
        }
    }
}
