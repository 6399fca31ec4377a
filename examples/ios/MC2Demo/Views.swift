import AVFoundation
import Photos
import PhotosUI
import SwiftUI

struct ContentView: View {
    @EnvironmentObject var model: AppModel

    var body: some View {
        VStack(alignment: .leading, spacing: 6) {
            Text(model.status).font(.footnote).bold()
            if let e = model.error { Text(e).font(.footnote).foregroundColor(.red) }
            if !model.verifyLines.isEmpty {
                // the bundle's verify/ vectors, run on this device when the bundle loaded: verdict and figures
                Text(model.verifyLines.joined(separator: "\n"))
                    .font(.system(.caption2, design: .monospaced))
                    .foregroundColor(model.verifyStatus == "passed" ? .green : model.verifyStatus == "absent" ? .orange : .red)
            }
            Button("Reload bundle") { Task { await model.reload() } }.font(.footnote)
            TabView {
                ClassifyView().tabItem { Label("Classify", systemImage: "camera") }
                SearchView().tabItem { Label("Search", systemImage: "magnifyingglass") }
                BenchmarkView().tabItem { Label("Benchmark", systemImage: "speedometer") }
            }
        }
        .padding(.horizontal)
    }
}

struct ClassifyView: View {
    @EnvironmentObject var model: AppModel
    @State private var pickerItem: PhotosPickerItem?
    @State private var cameraOn = false

    var body: some View {
        ScrollView {
            VStack(alignment: .leading, spacing: 8) {
                TextField("Labels (comma-separated)", text: $model.labels, axis: .vertical).textFieldStyle(.roundedBorder)
                Toggle("80 prompt templates (default 7)", isOn: $model.useOpenAITemplates)
                HStack {
                    Button(cameraOn ? "Stop camera" : "Camera") { toggleCamera() }.buttonStyle(.borderedProminent)
                    // .current: the file as stored (no transcoding to JPEG): the pixels and EXIF orientation Python reads
                    PhotosPicker(selection: $pickerItem, matching: .images, preferredItemEncoding: .current) {
                        Text("Pick photo")
                    }.buttonStyle(.bordered)
                }
                if cameraOn {
                    CameraPreview(session: model.camera.session).frame(height: 300)
                    Text("frames dropped while the model ran: \(model.framesDropped)").font(.caption2)
                } else if let crop = model.pickedCrop {
                    Image(decorative: crop, scale: 1).resizable().frame(width: 224, height: 224)
                    Text("What the model sees: resized and center-cropped, never squashed").font(.caption)
                }
                if let w = model.warning { Text(w).foregroundColor(.orange).font(.footnote) }
                ForEach(Array(model.results.enumerated()), id: \.offset) { _, r in
                    VStack(alignment: .leading) {
                        Text("\(r.label)  \(String(format: "%.1f", r.prob * 100))%")
                        ProgressView(value: Double(r.prob))
                    }
                }
            }
        }
        .onChange(of: pickerItem) { _, item in
            guard let item else { return }
            cameraOn = false
            model.camera.stop()
            Task { @MainActor in
                // the original file data: EXIF orientation is read and applied by the shared preprocessing
                if let data = try? await item.loadTransferable(type: Data.self) { await model.classifyPicked(data) }
                else { model.warning = "Cannot load this photo" }
            }
        }
        .onChange(of: model.labels) { _, _ in if cameraOn { Task { await model.prepareLabels() } } }
        .onChange(of: model.useOpenAITemplates) { _, _ in if cameraOn { Task { await model.prepareLabels() } } }
        .onDisappear { model.camera.stop(); cameraOn = false }
    }

    @MainActor private func toggleCamera() {
        if cameraOn { model.camera.stop(); cameraOn = false; return }
        Task { @MainActor in
            guard await AVCaptureDevice.requestAccess(for: .video) else {
                model.warning = "Camera access denied: pick a photo instead"
                return
            }
            await model.prepareLabels()  // class embeddings first: frames are classified against them
            if let err = model.camera.start() { model.warning = err } else { cameraOn = true }
        }
    }
}

struct SearchView: View {
    @EnvironmentObject var model: AppModel

    var body: some View {
        VStack(alignment: .leading, spacing: 8) {
            Text(model.indexInfo).font(.footnote)
            HStack {
                Button("Index photos") { Task { await model.buildIndex() } }.disabled(model.indexing).buttonStyle(.borderedProminent)
                if model.indexing { Button("Stop") { model.pauseIndexing() } }
                if model.indexProblem != nil { Button("Rebuild") { Task { await model.rebuildIndex() } }.buttonStyle(.bordered) }
            }
            TextField("Search your photos", text: $model.query).textFieldStyle(.roundedBorder).onSubmit { Task { await model.search() } }
            Button("Search") { Task { await model.search() } }
            ScrollView {
                LazyVGrid(columns: [GridItem(.adaptive(minimum: 100))]) {
                    ForEach(model.hits, id: \.id) { hit in ThumbnailView(localIdentifier: hit.id, score: hit.score) }
                }
            }
        }
    }
}

struct ThumbnailView: View {
    let localIdentifier: String
    let score: Float
    @State private var image: UIImage?

    var body: some View {
        VStack {
            if let image { Image(uiImage: image).resizable().scaledToFill().frame(width: 100, height: 100).clipped() }
            else { Color.gray.frame(width: 100, height: 100) }
            Text(String(format: "%.3f", score)).font(.caption2)
        }
        .task {
            guard let asset = PHAsset.fetchAssets(withLocalIdentifiers: [localIdentifier], options: nil).firstObject else { return }
            PHImageManager.default().requestImage(for: asset, targetSize: CGSize(width: 200, height: 200), contentMode: .aspectFill,
                                                  options: nil) { img, _ in if let img { image = img } }
        }
    }
}

struct BenchmarkView: View {
    @EnvironmentObject var model: AppModel

    var body: some View {
        ScrollView {
            VStack(alignment: .leading, spacing: 8) {
                Text("Protocols as `mc2export bench`: quick (>=20 calls and >=2 s, p50), modelbench (20 x 50, trimmed), mlperf (>=1024 calls and >=60 s, p90).")
                    .font(.footnote)
                Picker("Mode", selection: $model.benchMode) {
                    Text("quick").tag("quick"); Text("modelbench").tag("modelbench"); Text("mlperf").tag("mlperf")
                }.pickerStyle(.segmented)
                Button("Run benchmark") { Task { await model.runBenchmark(model.benchMode) } }
                    .disabled(model.busy).buttonStyle(.borderedProminent)
                Text(model.benchLog).font(.system(.footnote, design: .monospaced))
            }
        }
    }
}
