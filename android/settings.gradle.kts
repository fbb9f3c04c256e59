// Ember Android SDK: the library module (AAR) and the Compose chat example.
// Before building: scripts/build-android.sh (native libs + generated Kotlin).
pluginManagement {
    repositories { google(); mavenCentral(); gradlePluginPortal() }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories { google(); mavenCentral() }
}
rootProject.name = "ember-android"
include(":ember")
include(":android-chat")
project(":android-chat").projectDir = file("../examples/android-chat")
