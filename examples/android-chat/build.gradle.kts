// Minimal Compose chat on the Ember SDK. Built from android/ (settings include it):
//   cd android && ./gradlew :android-chat:installDebug
// Put a GGUF model in src/main/assets/model.gguf (stored uncompressed, see below),
// or change MainActivity to open a file the user picks (content URI).
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
    id("org.jetbrains.kotlin.plugin.compose")
}

android {
    namespace = "dev.ember.example"
    compileSdk = 35
    defaultConfig {
        applicationId = "dev.ember.example.chat"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
    }
    // The model is memory-mapped straight out of the APK: it must not be compressed.
    androidResources { noCompress += "gguf" }
    buildFeatures { compose = true }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    sourceSets["main"].java.srcDirs("src/main/kotlin")
}

kotlin { jvmToolchain(17) }

dependencies {
    implementation(project(":ember"))
    implementation(platform("androidx.compose:compose-bom:2025.01.00"))
    implementation("androidx.compose.material3:material3")
    implementation("androidx.compose.ui:ui")
    implementation("androidx.activity:activity-compose:1.9.3")
    implementation("androidx.lifecycle:lifecycle-viewmodel-compose:2.8.7")
}
