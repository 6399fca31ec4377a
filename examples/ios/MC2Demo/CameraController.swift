import AVFoundation
import MC2Core
import SwiftUI

/// Back camera frames (640x480 BGRA) for live zero-shot classification. The session is configured once (the
/// controller lives as long as the AppModel); start/stop only run or pause it. Frames reach `onFrame` on the
/// camera queue only when the FrameGate is free: while a prediction runs they are dropped right there (the
/// pixel buffer goes straight back to AVFoundation's pool, nothing is converted or queued), so the model
/// always works on the newest frame. alwaysDiscardsLateVideoFrames drops at the capture level too.
final class CameraController: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate, @unchecked Sendable {
    let session = AVCaptureSession()
    let gate = FrameGate()
    private let queue = DispatchQueue(label: "camera")
    private var configured = false
    private var rotation: AVCaptureDevice.RotationCoordinator?
    private var rotationObservation: NSKeyValueObservation?
    private let angleLock = NSLock()
    private var angle: Double = 90  // portrait, back camera
    /// Called on the camera queue with a frame the gate let through and its EXIF orientation; the callee must
    /// call `gate.release()` when its prediction is over.
    var onFrame: ((CVPixelBuffer, Int) -> Void)?

    /// Configure (first call only) and start. Returns a message for the screen when the camera cannot run.
    @MainActor
    func start() -> String? {
        guard AVCaptureDevice.authorizationStatus(for: .video) != .denied else { return "Camera access denied: pick a photo instead" }
        if !configured {
            guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
                  let input = try? AVCaptureDeviceInput(device: device) else { return "No camera available (simulator?): pick a photo instead" }
            session.beginConfiguration()
            session.sessionPreset = .vga640x480
            if session.canAddInput(input) { session.addInput(input) }
            let out = AVCaptureVideoDataOutput()
            out.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
            out.alwaysDiscardsLateVideoFrames = true
            out.setSampleBufferDelegate(self, queue: queue)
            if session.canAddOutput(out) { session.addOutput(out) }
            session.commitConfiguration()
            // frames stay in sensor orientation; the rotation that makes them upright becomes their EXIF orientation
            let coordinator = AVCaptureDevice.RotationCoordinator(device: device, previewLayer: nil)
            rotation = coordinator
            rotationObservation = coordinator.observe(\.videoRotationAngleForHorizonLevelCapture, options: [.initial, .new]) { [weak self] c, _ in
                guard let self else { return }
                let a = Double(c.videoRotationAngleForHorizonLevelCapture)
                self.angleLock.lock(); self.angle = a; self.angleLock.unlock()
            }
            configured = true
        }
        queue.async { if !self.session.isRunning { self.session.startRunning() } }
        return nil
    }

    func stop() { queue.async { if self.session.isRunning { self.session.stopRunning() } } }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let handler = onFrame, gate.tryAcquire() else { return }  // a prediction runs: this frame is dropped
        guard let pb = CMSampleBufferGetImageBuffer(sampleBuffer) else { gate.release(); return }
        angleLock.lock(); let a = angle; angleLock.unlock()
        handler(pb, ImageLoading.orientation(forRotation: a))
    }
}

/// The live preview layer.
struct CameraPreview: UIViewRepresentable {
    let session: AVCaptureSession

    final class PreviewView: UIView {
        override class var layerClass: AnyClass { AVCaptureVideoPreviewLayer.self }
        var previewLayer: AVCaptureVideoPreviewLayer { layer as! AVCaptureVideoPreviewLayer }
    }

    func makeUIView(context: Context) -> PreviewView {
        let v = PreviewView()
        v.previewLayer.session = session
        v.previewLayer.videoGravity = .resizeAspectFill
        return v
    }

    func updateUIView(_ uiView: PreviewView, context: Context) {}
}
