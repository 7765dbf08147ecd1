package io.bmtrain4j;

import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import com.tngtech.archunit.library.dependencies.SliceAssignment;
import com.tngtech.archunit.library.dependencies.SliceIdentifier;
import org.junit.jupiter.api.Test;

/**
 * The runtime's packages form a DAG: {@code Bmt} (the root package) is a facade over the others,
 * and none of them reaches back into it or into a package that depends on it.
 */
class ArchitectureTest {
  /** The runtime's own classes: the directory or jar {@code Bmt} was loaded from, not the tests. */
  private static final JavaClasses RUNTIME = new ClassFileImporter()
      .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
      .importUrl(Bmt.class.getProtectionDomain().getCodeSource().getLocation());

  /** One slice per package, the root package and sub-packages such as {@code optim.lr} included. */
  private static final SliceAssignment BY_PACKAGE = new SliceAssignment() {
    @Override
    public SliceIdentifier getIdentifierOf(JavaClass javaClass) {
      return SliceIdentifier.of(javaClass.getPackageName());
    }

    @Override
    public String getDescription() {
      return "the runtime's packages";
    }
  };

  @Test
  void runtimePackagesHaveNoCycles() {
    assertTrue(RUNTIME.size() > 50, "imported the runtime's classes: " + RUNTIME.size());
    slices().assignedFrom(BY_PACKAGE).should().beFreeOfCycles().check(RUNTIME);
  }
}
