// The Ember SDK as an Android library (AAR):
//   src/main/kotlin/uniffi/ember_ffi/  generated Kotlin (scripts/build-android.sh, not in git)
//   src/main/kotlin/dev/ember/         hand-written Flow layer (EmberFlow.kt)
//   src/main/jniLibs/<abi>/libember_ffi.so  built by scripts/build-android.sh (cargo-ndk)
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.ember"
    compileSdk = 35
    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    sourceSets["main"].jniLibs.srcDirs("src/main/jniLibs")
    sourceSets["main"].java.srcDirs("src/main/kotlin")
}

kotlin { jvmToolchain(17) }

dependencies {
    // The generated bindings call the native library through JNA (the AAR has its Android .so files).
    api("net.java.dev.jna:jna:5.18.1@aar")
    api("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
}
